#!/usr/bin/env bash
# LangGraph JS SDK interop check: installs the pinned packages (npm ci, skipped when node_modules
# already matches package-lock.json) and runs client.mjs against $THREADS_HTTP_URL
# (http://host:port, the HTTP/JSON port). Run by `python -m tests.interop langgraph-js`, or by hand:
#   THREADS_HTTP_URL=http://127.0.0.1:8080 bash tests/interop/langgraph-js/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
: "${THREADS_HTTP_URL:?set THREADS_HTTP_URL=http://host:port of a running threads server (HTTP/JSON)}"

# shellcheck source=../npm_setup.sh
source "$HERE/../npm_setup.sh"
cd "$HERE"
npm_setup langgraph-js "@langchain/langgraph-sdk"
cd "$ROOT"
exec node "$HERE/client.mjs"
