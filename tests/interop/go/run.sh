#!/usr/bin/env bash
# Go interop: generates threads.v1 stubs from protos/ with protoc-gen-go and
# protoc-gen-go-grpc, builds main.go and runs it against $THREADS_TARGET (host:port,
# plaintext). Works from a fresh clone with only go (>= 1.26) and python3 installed:
# the project's venv provides protoc (grpcio-tools), the Go module proxy the rest.
#
# Versions are pinned in go.mod/go.sum: the runtime modules as requirements, the two
# protoc plugins as `tool` directives. The plugins are installed into build/bin and
# reinstalled only when their version differs from go.mod's.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="$ROOT/build/bin"
GEN="$HERE/gen"
MODULE="threads" # go.mod's module path; go_package is "threads/gen/threadsv1"
: "${THREADS_TARGET:?set THREADS_TARGET to the host:port of a threads server}"

command -v go >/dev/null || { echo "run.sh: go is not on PATH" >&2; exit 1; }
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" # never rewrite go.mod/go.sum
cd "$HERE"

[[ -x "$ROOT/.venv/bin/python" ]] || make -C "$ROOT" install
protoc=("$ROOT/.venv/bin/python" -m grpc_tools.protoc)

# Plugins, at go.mod's versions (protoc-gen-go is versioned with google.golang.org/protobuf).
gen_go_version="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
gen_grpc_version="$(go list -m -f '{{.Version}}' google.golang.org/grpc/cmd/protoc-gen-go-grpc)"
if [[ "$("$BIN/protoc-gen-go" --version 2>/dev/null)" != "protoc-gen-go $gen_go_version" ||
      "$("$BIN/protoc-gen-go-grpc" --version 2>/dev/null)" != "protoc-gen-go-grpc ${gen_grpc_version#v}" ]]; then
    echo "installing protoc-gen-go $gen_go_version, protoc-gen-go-grpc $gen_grpc_version into $BIN"
    mkdir -p "$BIN"
    GOBIN="$BIN" go install google.golang.org/protobuf/cmd/protoc-gen-go \
        google.golang.org/grpc/cmd/protoc-gen-go-grpc
fi

echo "versions: $(go version | cut -d' ' -f3-), protoc $("${protoc[@]}" --version | cut -d' ' -f2)," \
    "$("$BIN/protoc-gen-go" --version), $("$BIN/protoc-gen-go-grpc" --version)"
go list -m -f '  {{.Path}} {{.Version}}' google.golang.org/grpc google.golang.org/protobuf \
    google.golang.org/genproto/googleapis/rpc

# Stubs, regenerated every run into gen/ (gitignored).
rm -rf "$GEN"
mkdir -p "$GEN"
"${protoc[@]}" -I "$ROOT/protos" \
    --plugin=protoc-gen-go="$BIN/protoc-gen-go" --plugin=protoc-gen-go-grpc="$BIN/protoc-gen-go-grpc" \
    --go_out="$GEN" --go_opt=module="$MODULE/gen" \
    --go-grpc_out="$GEN" --go-grpc_opt=module="$MODULE/gen" \
    "$ROOT"/protos/threads/v1/*.proto

mkdir -p "$ROOT/build"
go build -buildvcs=false -o "$ROOT/build/threads-interop-go" .
exec "$ROOT/build/threads-interop-go"
