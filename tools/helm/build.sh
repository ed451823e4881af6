#!/usr/bin/env bash
# Builds the helm CLI (helm.sh/helm/v4/cmd/helm, pinned in this module) into
# a cache directory outside the clone, keyed by this module's go.sum, and
# prints that directory. Skips the build when the binary is already there.
# The chart tests in deploy/ run it.
#
#   ISTHMUS_HELM_CACHE  cache root (default /var/cache/isthmus/helm)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${ISTHMUS_HELM_CACHE:-/var/cache/isthmus/helm}
key=$(sha256sum "$here/go.sum" | cut -c1-16)
dir="$root/$key"

if [[ -x "$dir/helm" ]]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$here"
echo "building helm into $dir (cold: a few minutes)" >&2
CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w" -o "$tmp/helm" helm.sh/helm/v4/cmd/helm
mv "$tmp/helm" "$dir/helm"
echo "$dir"
