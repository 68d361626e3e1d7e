#!/usr/bin/env bash
# Node.js interop check: installs the pinned packages (npm ci, skipped when node_modules
# already matches package-lock.json) and runs client.mjs against $THREADS_TARGET
# (host:port, plaintext). Run by `python -m tests.interop node`, or by hand:
#   THREADS_TARGET=127.0.0.1:50051 bash tests/interop/node/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
: "${THREADS_TARGET:?set THREADS_TARGET=host:port of a running threads server (plaintext)}"

# shellcheck source=../npm_setup.sh
source "$HERE/../npm_setup.sh"
cd "$HERE"
npm_setup node "@grpc/grpc-js" "@grpc/proto-loader" protobufjs google-proto-files
cd "$ROOT"
exec node "$HERE/client.mjs"
