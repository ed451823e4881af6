#!/usr/bin/env bash
# Builds etcd, the Kubernetes v1.37.2 programs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet) and the CNI loopback
# plugin (containerd's CRI sets up each pod's lo with it) from the Go module proxy
# into a cache directory outside the clone, keyed by this module's go.sum, and
# prints that directory. Skips every binary already there; the directory is
# complete once each is present.
#
#   ISTHMUS_KUBE_CACHE  cache root (default /var/cache/isthmus/kube)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${ISTHMUS_KUBE_CACHE:-/var/cache/isthmus/kube}
key=$(sha256sum "$here/go.sum" | cut -c1-16)
dir="$root/$key"

# name=package, smallest first so a partial cache is still useful.
bins=(
	loopback=github.com/containernetworking/plugins/plugins/main/loopback
	etcd=./etcd
	kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler
	kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
	kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager
	kubelet=k8s.io/kubernetes/cmd/kubelet
	kubectl=k8s.io/kubernetes/cmd/kubectl
)

missing=()
for b in "${bins[@]}"; do
	[[ -x "$dir/${b%%=*}" ]] || missing+=("$b")
done
if ((${#missing[@]} == 0)); then
	echo "$dir"
	exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

ver=v1.37.2
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
cd "$here"
for b in "${missing[@]}"; do
	name=${b%%=*} pkg=${b#*=}
	echo "building $name $ver into $dir" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$pkg"
	# Install atomically: a reader sees a whole binary or none.
	mv "$tmp/$name" "$dir/$name"
done
echo "$dir"
