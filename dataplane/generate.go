package dataplane

// The forwarder's C sources live in bpf/. bpf2go compiles them with the
// Debian clang-14 and writes forwarder_bpfel.{go,o}; both are committed.
// TestGeneratedUpToDate fails when they no longer match the sources.
//
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -target bpfel -tags linux -type tunnel -type iface -type route_key -type host_key -type route -type nexthop -type group -type endpoint -type label_target -type mac_key -type endpoint_hint -type iface_stats -type endpoint_stats -type drops -type flow_key -type flow -type service_key -type service -type backend -type svc_stats -type flow_stats forwarder bpf/forwarder.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu
