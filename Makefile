# Every target does its own set-up: a fresh clone needs only python3 (and, for the
# Redis 7 half of the test matrix, Debian's redis-server, and for the real-scraper test of
# /metrics, Debian's prometheus; .ci/run installs both, a dev box: apt-get install them).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTO_SRC := protos/threads/v1/threads.proto
# The stubs, generated into both distributions (each installs alone): the client's and the server's.
PB_DIRS := client/threads_service_client/pb server/threads_server/pb
BUF := $(VENV)/bin/buf
PROTO_DIR := protos
# The last released API, as a buf image: what `buf breaking` compares protos/ against.
API_IMAGE := protos/released/threads.v1.binpb

# Hash-pinned locks (tests/lockfiles.py says which ranges each pins): everything installs from
# them with --require-hashes, so a commit installs the same bytes on any day; our own two
# packages go in after, with --no-deps. make lock rewrites them after a range changes.
DEV_LOCK ?= tests/requirements.txt
LANGGRAPH_LOCK := tests/load/requirements-langgraph.txt
# The one place the version of both distributions is written (CHANGELOG.md).
VERSION_FILE := client/VERSION
VERSION := $(shell cat $(VERSION_FILE))
DIST_DIR := build/dist

.PHONY: install lock upgrade-check dist image image-check proto check-proto client-sync check-client-sync docs check-package run test lint lint-proto release-api clean interop protoset bench bench-auth bench-failover load bench-http bench-search bench-metrics bench-tracing ghz bench-cost fuzz-http bench-watch hey bench-fast

install: $(STAMP)

# Our packages are built without build isolation, so setuptools comes from the lock too.
$(STAMP): pyproject.toml client/pyproject.toml $(DEV_LOCK) $(VERSION_FILE)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./client -e .
	echo $(DEV_LOCK) > $(STAMP)  # the lock this venv holds (tests/test_locks.py reads it)

# Rewrites every lock from the ranges in the pyproject.toml files (and tests/load/*.in) with
# the venv's own uv; pins that still fit are kept. Run it after changing a dependency;
# LOCK_ARGS=--upgrade moves every pin to the newest its range allows.
lock: $(STAMP)
	$(PY) -m tests.lockfiles compile $(LOCK_ARGS)

# Drift found on purpose: the newest versions the ranges allow, locked into build/upgrade,
# installed into a scratch venv there, then lint and the suite. Prints what moved first.
UPGRADE_DIR := build/upgrade
upgrade-check: $(STAMP)
	rm -rf $(UPGRADE_DIR)
	$(PY) -m tests.lockfiles compile --upgrade --into $(UPGRADE_DIR)
	@echo "--- upgrade-check: what moved in $(DEV_LOCK)"
	$(PY) -m tests.lockfiles moved $(DEV_LOCK) $(UPGRADE_DIR)/$(DEV_LOCK)
	$(MAKE) lint test VENV=$(UPGRADE_DIR)/venv DEV_LOCK=$(UPGRADE_DIR)/$(DEV_LOCK)
	@echo "--- upgrade-check passed; what moved:"
	@$(PY) -m tests.lockfiles moved $(DEV_LOCK) $(UPGRADE_DIR)/$(DEV_LOCK)

# Release artifacts: a wheel and an sdist of each distribution into $(DIST_DIR) (PEP 517,
# built from the sdist; the backend from the lock), checked by twine.
dist: $(STAMP)
	rm -rf $(DIST_DIR)
	$(PY) -m build --no-isolation --outdir $(DIST_DIR) client
	$(PY) -m build --no-isolation --outdir $(DIST_DIR) .
	$(PY) -m twine check --strict $(DIST_DIR)/*
	ls -l $(DIST_DIR)

# Regenerates the committed Python stubs. protoc emits absolute imports
# (`from threads.v1 import ...`); they are rewritten to the package they live in.
proto: $(STAMP)
	rm -rf build/proto && mkdir -p build/proto
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos \
		--python_out=build/proto --grpc_python_out=build/proto \
		--mypy_out=build/proto --mypy_grpc_out=build/proto $(PROTO_SRC)
	for dir in $(PB_DIRS); do \
		package=$$(basename $$(dirname $$dir)); \
		for f in build/proto/threads/v1/threads_pb2*; do \
			sed -e "s/^from threads\.v1 import /from $$package.pb import /" "$$f" > $$dir/$$(basename "$$f"); \
		done; \
	done

# The blocking client (client/threads_service_client/_sync.py) is generated from the asyncio one
# (_async.py) by unasync; edit _async.py, then regenerate. client/scripts/unasync_client.py.
client-sync: $(STAMP)
	$(PY) client/scripts/unasync_client.py

# Fails (and prints the diff) when _sync.py differs from what `make client-sync` generates.
check-client-sync: $(STAMP)
	$(PY) client/scripts/unasync_client.py --check

# Rewrites the tables of the docs that repeat the proto (docs/api.md's RPCs, docs/http.md's
# routes) from protos/ (tests/docs_tables.py); tests/test_docs.py fails while one is stale.
docs: $(STAMP)
	$(PY) -m tests.docs_tables

# A self-contained descriptor set (with imports) for tools that take one instead of
# reflection: ghz --protoset, grpcurl -protoset, Postman.
protoset: $(STAMP)
	mkdir -p build
	$(PY) -m grpc_tools.protoc -I protos --include_imports --include_source_info \
		--descriptor_set_out=build/threads.protoset $(PROTO_SRC)
	$(PY) -c "from google.protobuf import descriptor_pb2 as d; \
		s = d.FileDescriptorSet.FromString(open('build/threads.protoset', 'rb').read()); \
		print('build/threads.protoset:', ', '.join(f.package + '.' + v.name \
			for f in s.file for v in f.service))"

# Fails when the committed stubs differ from what `make proto` generates.
check-proto: proto
	git diff --exit-code -- $(PB_DIRS)
	test -z "$$(git status --porcelain -- $(PB_DIRS))"

# Each distribution installs alone in a fresh venv, from the checkout and from its wheel:
# its lock, then it with no index at all, so nothing comes from one under our names; the
# console script starts; the README snippet runs in the client-only venv against the server
# started from the server-only venv (tests/check_package.py).
check-package: dist
	$(PY) -m tests.check_package --dist $(DIST_DIR)

# The container image (deploy/Containerfile, docs/deployment.md): the built server wheel and
# the server lock on a Debian bookworm base. Here the base is made from Debian's packages
# with mmdebstrap and kept (REBUILD=1 deploy/podman/debian-image.sh to refresh it); set
# IMAGE_BASE=python:3.11-slim-bookworm where a registry is reachable. The CA bundle is a
# build secret: pip in the build trusts what the host trusts, and no layer keeps it.
IMAGE ?= localhost/threads-service:$(VERSION)
IMAGE_BASE ?= localhost/threads-base:bookworm
REDIS_IMAGE ?= localhost/threads-redis:bookworm
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
PODMAN_ENV := CONTAINERS_CONF=$${CONTAINERS_CONF:-$(abspath deploy/podman/containers.conf)}

image: dist
	if [ "$(IMAGE_BASE)" = localhost/threads-base:bookworm ]; then \
		$(PODMAN_ENV) deploy/podman/debian-image.sh $(IMAGE_BASE) \
			python3 python3-venv ca-certificates passwd; \
	fi
	$(PODMAN_ENV) podman build --format docker --network host \
		--build-arg BASE=$(IMAGE_BASE) --secret id=ca-bundle,src=$(CA_BUNDLE) \
		--file deploy/Containerfile --tag $(IMAGE) .
	$(PODMAN_ENV) podman image inspect --format '$(IMAGE): {{.Size}} bytes' $(IMAGE)

# The image at work, on 127.0.0.1 only (--network host): next to a Redis container (Redis
# from Debian's packages too), then alone on its embedded Valkey. /ok, a copy over HTTP,
# gRPC health and the image's HEALTHCHECK, non-root, the CA secret in no layer; both
# containers stopped and removed (tests/check_image.py).
image-check: $(STAMP)
	$(PODMAN_ENV) deploy/podman/debian-image.sh $(REDIS_IMAGE) redis-server
	$(PODMAN_ENV) $(PY) -m tests.check_image --image $(IMAGE) --redis-image $(REDIS_IMAGE) \
		--ca-bundle $(CA_BUNDLE)

run: $(STAMP)
	$(PY) -m threads_server $(ARGS)

# Copy RPC vs raw Redis COPY for 10 to 1,000,000 entries, and server memory
# (tests/load/bench_copy.py). BENCH_ARGS="--backend valkey 10 1000" narrows it.
bench: $(STAMP)
	$(PY) -m tests.load.bench_copy $(BENCH_ARGS)

# What bearer-token auth costs: token verification, cached and not, and Get RPC latency
# with auth off vs HS256/RS256/ES256 (tests/load/bench_auth.py).
bench-auth: $(STAMP)
	$(PY) -m tests.load.bench_auth

# Primaries SIGKILLed under load on a Redis Cluster with replicas and on Sentinel, with and
# without --min-replica-acks 1: recovery time, acknowledged writes lost per kill, and what
# the option costs in Append/Copy latency and RPS (tests/load/bench_failover.py).
bench-failover: $(STAMP)
	$(PY) -m tests.load.bench_failover $(BENCH_ARGS)

# Copy over HTTP (the LangGraph SDK) vs gRPC (threads_service_client) on this server, and vs LangGraph's
# own `langgraph dev`, in one run (tests/load/bench_http.py). Two venvs of its own, each from
# a lock: $(LANGGRAPH_VENV) serves LangGraph from $(LANGGRAPH_LOCK) (its pins fight ours:
# langgraph-cli[inmem] pins protobuf 6, the client 7); $(BENCH_HTTP_VENV) runs the driver:
# the dev lock (langgraph-sdk and pytest are in it; tests/server_process.py imports pytest)
# and this project. BENCH_HTTP_ARGS="--sizes 10 --duration 5" narrows it.
LANGGRAPH_VENV := build/langgraph-venv
BENCH_HTTP_VENV := build/bench-http-venv

$(LANGGRAPH_VENV)/.installed-stamp: $(LANGGRAPH_LOCK)
	test -x $(LANGGRAPH_VENV)/bin/python || python3 -m venv $(LANGGRAPH_VENV)
	$(LANGGRAPH_VENV)/bin/python -m pip install --quiet --require-hashes -r $(LANGGRAPH_LOCK)
	touch $@

$(BENCH_HTTP_VENV)/.installed-stamp: pyproject.toml client/pyproject.toml $(DEV_LOCK)
	test -x $(BENCH_HTTP_VENV)/bin/python || python3 -m venv $(BENCH_HTTP_VENV)
	$(BENCH_HTTP_VENV)/bin/python -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BENCH_HTTP_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation \
		-e ./client -e .
	touch $@

bench-http: $(LANGGRAPH_VENV)/.installed-stamp $(BENCH_HTTP_VENV)/.installed-stamp
	$(BENCH_HTTP_VENV)/bin/python -m tests.load.bench_http $(BENCH_HTTP_ARGS)

# Search and Count latency at 10,000 and 1,000,000 threads, the index's write cost (A/B,
# --search-index 1 vs 0) and memory per thread (tests/load/bench_search.py).
# BENCH_ARGS="--sizes 10000" narrows it.
bench-search: $(STAMP)
	$(PY) -m tests.load.bench_search $(BENCH_ARGS)

# ghz v0.121.0 into build/bin, for the ghz benches below, unless the one there is already
# that version (its --version says "dev", so ask go version -m).
ghz:
	go version -m build/bin/ghz 2>/dev/null | grep -Eq '^\s+mod\s+github.com/bojand/ghz\s+v0\.121\.0\s' \
		|| GOBIN=$(abspath build/bin) go install github.com/bojand/ghz/cmd/ghz@v0.121.0

# hey v0.1.4 into build/bin (an HTTP load generator in Go, like ghz for gRPC), for
# bench-fast's HTTP Copy with and without keep-alive, unless that version is there.
hey:
	go version -m build/bin/hey 2>/dev/null | grep -Eq '^\s+mod\s+github.com/rakyll/hey\s+v0\.1\.4\s' \
		|| GOBIN=$(abspath build/bin) go install github.com/rakyll/hey@v0.1.4

# Issue 22's fast paths, build against build in one run: the server's CPU per Copy over
# gRPC, HTTP keep-alive and HTTP with a new connection per request (16 callers), and ghz
# Search/Count RPS over Get RPS at 10,000 and 1,000,000 threads, one worker
# (tests/load/bench_fast.py; build/bench-fast/results.md).
# BENCH_FAST_ARGS="--sizes 10000 --duration 3s" narrows it.
bench-fast: $(STAMP) ghz hey
	$(PY) -m tests.load.bench_fast $(BENCH_FAST_ARGS)

# ghz scenarios against --workers 1 and N (tests/load/README.md).
load: $(STAMP) ghz
	$(PY) -m tests.load.ghz_load $(LOAD_ARGS)

# What Prometheus metrics cost: ghz Get and Copy@10 RPS with metrics on vs --metrics off,
# side by side, and each recorder's ns per call (tests/load/bench_metrics.py).
bench-metrics: $(STAMP) ghz
	$(PY) -m tests.load.bench_metrics $(BENCH_METRICS_ARGS)

# What tracing costs: ghz Get and Copy@10 with tracing off, on but sampling nothing, and
# on (exporting to a local OTLP receiver), and the build before tracing, in one run
# (tests/load/bench_tracing.py). BENCH_ARGS="--duration 5s --rounds 1" narrows it;
# BENCH_ARGS="--observability" compares all off, metrics, and metrics + tracing instead.
bench-tracing: $(STAMP) ghz
	$(PY) -m tests.load.bench_tracing $(BENCH_ARGS)

# Watch under load (issue 21): Append-to-receipt delay p50/p99 at 1, 100 and 1,000 watchers
# of one thread, Redis reads per Append, 10,000 idle watchers held open (memory per watcher),
# and Append RPS with 1,000 watchers open vs none (tests/load/bench_watch.py).
# BENCH_ARGS="--duration 3 --watchers 1 100 --idle 1000 --rounds 1" narrows it.
bench-watch: $(STAMP)
	$(PY) -m tests.load.bench_watch $(BENCH_ARGS)

# What a call costs, build against build: ghz Health, Copy@10, Copy@1000, Get and Append
# against several revisions of the server (default: the merge-base with main and this
# checkout), all started at once and measured in turn, at 1 and N workers: RPS, ratios to
# Health, calls per server CPU-second (tests/load/bench_cost.py; build/bench-cost/results.md).
# BENCH_COST_ARGS="--variant a=main --variant b=WORKTREE:'--metrics off' --duration 5s".
bench-cost: $(STAMP) ghz
	$(PY) -m tests.load.bench_cost $(BENCH_COST_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Fuzzes the HTTP/JSON front door of a server of its own (embedded Valkey, auth on) for
# FUZZ_ARGS="--duration 600" seconds in all, the default: schemathesis with schema-valid
# and schema-violating data, then a generator of malformed JSON and HTTP/1.1. Fails on any
# 5xx or traceback; build/fuzz-http/ has the figures and findings (tests/fuzz_http.py).
# Not part of `make test`.
fuzz-http: $(STAMP)
	$(PY) -m tests.fuzz_http $(FUZZ_ARGS)

# Go, Node and Java clients built from protos/ with their own toolchains, and LangGraph's JS SDK
# over HTTP/JSON (langgraph-js), each run against a live server (tests/interop/__main__.py).
# LANGS=go limits it to one.
interop: $(STAMP)
	$(PY) -m tests.interop $(LANGS)

lint: $(STAMP) check-client-sync lint-proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy client/scripts

# The proto is checked like the code: buf's STANDARD lint rules (protos/buf.yaml), and no
# breaking change against the released API. CI runs on main, so main's own history holds
# nothing to compare with: the released API is the committed image $(API_IMAGE).
lint-proto: $(STAMP)
	$(BUF) lint $(PROTO_DIR)
	$(BUF) breaking $(PROTO_DIR) --against $(API_IMAGE)

# Records protos/ as released: rewrites $(API_IMAGE), which `make lint` compares against
# from then on. Run it when an API version ships (and commit the image). A change buf calls
# breaking is listed and refused unless ALLOW_BREAKING=1 says it is deliberate.
release-api: $(STAMP)
	$(BUF) lint $(PROTO_DIR)
	if [ -f $(API_IMAGE) ] && ! $(BUF) breaking $(PROTO_DIR) --against $(API_IMAGE); then \
		if [ "$(ALLOW_BREAKING)" != 1 ]; then \
			echo "release-api: the changes above break the released API; if that is deliberate," \
				"run make release-api ALLOW_BREAKING=1" >&2; \
			exit 1; \
		fi; \
		echo "release-api: ALLOW_BREAKING=1, recording the changes above as released"; \
	fi
	mkdir -p $(dir $(API_IMAGE))
	$(BUF) build $(PROTO_DIR) --exclude-source-info -o $(API_IMAGE)
	@echo "wrote $(API_IMAGE); commit it"

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
