#!/usr/bin/env bash
# LangGraph JS SDK interop check: installs the pinned packages (npm ci, skipped when node_modules
# already matches package-lock.json) and runs client.mjs against $THREADS_HTTP_URL
# (http://host:port, the HTTP/JSON port). Run by `python -m tests.interop langgraph-js`, or by hand:
#   THREADS_HTTP_URL=http://127.0.0.1:8080 bash tests/interop/langgraph-js/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
: "${THREADS_HTTP_URL:?set THREADS_HTTP_URL=http://host:port of a running threads server (HTTP/JSON)}"

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "langgraph-js interop: '$tool' not found; install Node.js >= 18" >&2; exit 1; }
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' \
  || { echo "langgraph-js interop: Node.js >= 18 needed, found $(node --version)" >&2; exit 1; }

cd "$HERE"
# The stamp (written only after a successful npm ci) holds a hash of the lock file and the
# Node version; npm ci removes node_modules first, so a half-done install never matches.
STAMP=node_modules/.threads-interop-langgraph-js-stamp
want="$(node -e '
  const { createHash } = require("node:crypto");
  const lock = require("node:fs").readFileSync("package-lock.json");
  console.log(createHash("sha256").update(lock).update(process.version).digest("hex"));
')"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  echo "langgraph-js interop: node_modules matches package-lock.json, skipping npm ci"
else
  started=$SECONDS
  # --ignore-scripts: none of these packages needs an install script to work.
  npm ci --no-audit --no-fund --no-update-notifier --ignore-scripts
  echo "$want" > "$STAMP"
  echo "langgraph-js interop: npm ci took $((SECONDS - started))s"
fi

node -e '
  const pkgs = ["@langchain/langgraph-sdk"];
  const v = pkgs.map((p) => `${p} ${require(`${p}/package.json`).version}`);
  console.log(`langgraph-js interop: node ${process.version}, npm '"$(npm --version)"', ${v.join(", ")}`);
'
cd "$ROOT"
exec node "$HERE/client.mjs"
