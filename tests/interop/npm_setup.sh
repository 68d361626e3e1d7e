# Shared by the Node-based interop checks (node/, langgraph-js/): source it, then call
#   npm_setup <label> <package>...
# from the folder holding package.json. It checks for Node.js >= 18 and npm, installs the
# pinned packages with npm ci (skipped while node_modules matches package-lock.json), and
# prints the versions of node, npm and the named packages.

npm_setup() {
  local label="$1"
  shift
  local tool
  for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "$label interop: '$tool' not found; install Node.js >= 18" >&2; exit 1; }
  done
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' \
    || { echo "$label interop: Node.js >= 18 needed, found $(node --version)" >&2; exit 1; }

  # The stamp (written only after a successful npm ci) holds a hash of the lock file and the
  # Node version; npm ci removes node_modules first, so a half-done install never matches.
  local stamp=node_modules/.threads-interop-stamp want started
  want="$(node -e '
    const { createHash } = require("node:crypto");
    const lock = require("node:fs").readFileSync("package-lock.json");
    console.log(createHash("sha256").update(lock).update(process.version).digest("hex"));
  ')"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$label interop: node_modules matches package-lock.json, skipping npm ci"
  else
    started=$SECONDS
    # --ignore-scripts: none of these packages needs an install script to work.
    npm ci --no-audit --no-fund --no-update-notifier --ignore-scripts
    echo "$want" > "$stamp"
    echo "$label interop: npm ci took $((SECONDS - started))s"
  fi

  LABEL="$label" NPM_VERSION="$(npm --version)" node -e '
    const v = process.argv.slice(1).map((p) => `${p} ${require(`${p}/package.json`).version}`);
    const { LABEL, NPM_VERSION } = process.env;
    console.log(`${LABEL} interop: node ${process.version}, npm ${NPM_VERSION}, ${v.join(", ")}`);
  ' "$@"
}
