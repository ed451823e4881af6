#!/usr/bin/env bash
# Builds etcd and kube-apiserver v1.37.2 from the Go module proxy into a cache
# directory outside the clone, keyed by this module's go.sum, and prints that
# directory. Skips the build when both binaries are already there.
#
#   ISTHMUS_KUBE_CACHE  cache root (default /var/cache/isthmus/kube)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${ISTHMUS_KUBE_CACHE:-/var/cache/isthmus/kube}
key=$(sha256sum "$here/go.sum" | cut -c1-16)
dir="$root/$key"

if [[ -x "$dir/etcd" && -x "$dir/kube-apiserver" ]]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ver=v1.37.2
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
cd "$here"
echo "building etcd and kube-apiserver $ver into $dir (cold: ~10-16 min)" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/etcd" ./etcd
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
# Install atomically: a reader sees both binaries or neither.
mv "$tmp/etcd" "$dir/etcd"
mv "$tmp/kube-apiserver" "$dir/kube-apiserver"
echo "$dir"
