// Package bgp owns Isthmus's BGP speaker: an embedded GoBGP v4 server that
// carries tenant routes as VPNv4 (L3VPN) paths.
//
// It implements nos.Reconciler. Every commit is translated, by pure
// functions, from the configuration tree into an intent (global settings,
// neighbors, VRFs, the tunnel source); the difference between the old and
// the new intent becomes GoBGP calls, so sessions the commit does not touch
// are never reset.
//
// Export turns each local pod /32 and static route of a VRF into a VPNv4
// path (RD:prefix, export route targets, a label from the core's persistent
// allocator, next hop = tunnel source, RFC 9012 encapsulation community).
// Import watches what each peer sends (GoBGP's Adj-RIB-In, one event per
// UPDATE), matches route targets against each VRF's import route targets,
// selects and publishes routes with ECMP next hops {endpoint, label,
// encapsulation} into the core's FIB, which the dataplane programs. Session and route counters are written back as state.
package bgp
