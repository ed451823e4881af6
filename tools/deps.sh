#!/usr/bin/env bash
# Installs the system packages Isthmus builds and tests with, through apt,
# only when one is missing. Safe to run again and again.
set -euo pipefail

# package:command pairs; the command proves the package is there.
need=(
  clang:clang
  llvm:llvm-strip
  libbpf-dev:/usr/include/bpf/bpf_helpers.h
  bpftool:bpftool
  frr:/usr/lib/frr/bgpd
  iproute2:ip
  ethtool:ethtool
  iperf3:iperf3
  tcpdump:tcpdump
  iputils-ping:ping
  procps:pkill
  util-linux:nsenter
  containerd:ctr
)

missing=()
for pair in "${need[@]}"; do
  pkg=${pair%%:*}
  probe=${pair#*:}
  if [[ $probe == /* ]]; then
    [[ -e $probe ]] && continue
  else
    command -v "$probe" >/dev/null 2>&1 && continue
  fi
  missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing: ${missing[*]}"
sudo=
[[ $(id -u) -eq 0 ]] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# FRR's package enables its own service; Isthmus starts FRR itself, per test.
if [[ " ${missing[*]} " == *" frr "* ]] && command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now frr >/dev/null 2>&1 || true
fi
# Likewise containerd: the image tests start a throwaway one of their own.
if [[ " ${missing[*]} " == *" containerd "* ]] && command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now containerd >/dev/null 2>&1 || true
fi
