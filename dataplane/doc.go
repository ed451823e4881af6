// Package dataplane owns the eBPF forwarder of Isthmus: the C programs in
// bpf/ (compiled by bpf2go into forwarder_bpfel.{go,o}), the loader that pins
// their maps, programs and links under a bpffs directory and adopts them
// after a restart, a typed API to program VRFs, routes, labels and tunnel
// endpoints, per-CPU counters, the netlink glue that resolves next-hop MACs,
// and the reconciler that turns committed configuration into map state.
//
// Data flow:
//
//	pod ─veth─► pod_ingress (tcx) ─► ifaces: VRF ─► routes (LPM on VRF, dst)
//	              ├─ local: MAC rewrite, redirect into the other pod's veth
//	              └─ remote: groups (ECMP by inner 5-tuple) ─► endpoints (MAC)
//	                 ─► push label (+ IPv4/UDP 6635, or + transport label)
//	                 ─► redirect out the underlay
//	underlay ─► underlay_xdp: MPLSoMPLS pop ─► metadata {ifindex} ─► XDP_PASS
//	         ─► underlay_ingress (tcx): MPLSoUDP from a known endpoint
//	              ─► labels: VRF (then routes) or interface ─► strip, rewrite
//	              MACs, redirect into the pod's veth
//
// No code outside this package touches the maps.
package dataplane
