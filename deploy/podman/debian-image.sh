#!/usr/bin/env bash
# A Debian bookworm image made from Debian's packages alone, where no container registry is
# reachable: mmdebstrap's minbase variant plus the packages named, imported into podman.
#
#   deploy/podman/debian-image.sh NAME PACKAGE...
#
# Keeps an existing NAME (the cache `make image` builds on); REBUILD=1 makes it again.
# Merged /usr set up by mmdebstrap's own hook (the usrmerge package would pull in Perl); docs,
# man pages and locales are left out (copyright files stay), and apt's lists removed.
set -euo pipefail
name=$1
shift
if [ "${REBUILD:-0}" != 1 ] && podman image exists "$name"; then
  echo "$name: already built (REBUILD=1 to make it again)"
  exit 0
fi
for tool in mmdebstrap podman; do
  command -v "$tool" >/dev/null || {
    echo "$0: $tool not found: apt-get install podman buildah runc mmdebstrap" \
      "(or make image IMAGE_BASE=python:3.11-slim-bookworm where a registry is reachable)" >&2
    exit 1
  }
done
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
include=$(IFS=,; echo "$*")
echo "$name: mmdebstrap --variant=minbase bookworm + $include"
mmdebstrap --variant=minbase --include="$include" \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm - \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main" \
  | podman import --change 'CMD ["/bin/bash"]' - "$name"
podman image inspect --format "$name: {{.Size}} bytes" "$name"
