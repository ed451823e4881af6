#!/usr/bin/env bash
# Builds gnmic (main.go here, on the gnmic release required in go.mod) into
# a cache directory outside the clone, keyed by this module's go.mod, go.sum
# and main.go, and prints the binary's path. Skips the build when the binary
# for the current key is there; installs it by a rename, so a reader sees a
# whole binary or none.
#
#   ISTHMUS_GNMIC_CACHE  cache root (default /var/cache/isthmus/gnmic)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${ISTHMUS_GNMIC_CACHE:-/var/cache/isthmus/gnmic}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)
dir="$root/$key"
bin="$dir/gnmic"
if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$here"
export GOWORK=off
ver=$(go list -m -f '{{.Version}}' github.com/openconfig/gnmic)
echo "building gnmic $ver into $dir" >&2
go build -ldflags "-X github.com/openconfig/gnmic/pkg/version.Version=$ver" -o "$tmp/gnmic" .
mv "$tmp/gnmic" "$bin"
echo "$bin"
