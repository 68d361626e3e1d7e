#!/usr/bin/env bash
# Node.js interop check: installs the pinned packages (npm ci, skipped when node_modules
# already matches package-lock.json) and runs client.mjs against $THREADS_TARGET
# (host:port, plaintext). Run by `python -m tests.interop node`, or by hand:
#   THREADS_TARGET=127.0.0.1:50051 bash tests/interop/node/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
: "${THREADS_TARGET:?set THREADS_TARGET=host:port of a running threads server (plaintext)}"

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "node interop: '$tool' not found; install Node.js >= 18" >&2; exit 1; }
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' \
  || { echo "node interop: Node.js >= 18 needed, found $(node --version)" >&2; exit 1; }

cd "$HERE"
# The stamp (written only after a successful npm ci) holds a hash of the lock file and the
# Node version; npm ci removes node_modules first, so a half-done install never matches.
STAMP=node_modules/.threads-interop-stamp
want="$(node -e '
  const { createHash } = require("node:crypto");
  const lock = require("node:fs").readFileSync("package-lock.json");
  console.log(createHash("sha256").update(lock).update(process.version).digest("hex"));
')"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  echo "node interop: node_modules matches package-lock.json, skipping npm ci"
else
  started=$SECONDS
  # --ignore-scripts: none of these packages needs an install script to work.
  npm ci --no-audit --no-fund --no-update-notifier --ignore-scripts
  echo "$want" > "$STAMP"
  echo "node interop: npm ci took $((SECONDS - started))s"
fi

node -e '
  const pkgs = ["@grpc/grpc-js", "@grpc/proto-loader", "protobufjs", "google-proto-files"];
  const v = pkgs.map((p) => `${p} ${require(`${p}/package.json`).version}`);
  console.log(`node interop: node ${process.version}, npm '"$(npm --version)"', ${v.join(", ")}`);
'
cd "$ROOT"
exec node "$HERE/client.mjs"
