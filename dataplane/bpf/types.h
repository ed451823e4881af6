/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared layout of the Isthmus forwarder's maps. The Go side mirrors every
 * struct here through the types bpf2go generates (forwarder_bpfel.go), so a
 * change here is a change of the pinned map ABI: bump ISTHMUS_ABI.
 */
#ifndef ISTHMUS_TYPES_H
#define ISTHMUS_TYPES_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* ISTHMUS_ABI is stored in the pinned meta map; a loader that finds another
 * value refuses to adopt the pinned maps. */
#define ISTHMUS_ABI 11

#define MAX_NEXTHOPS 16
#define MAX_VRFS 16384
#define MAX_GROUPS 16384
#define MAX_ROUTES (1 << 21)
#define HOST_ROUTES (1 << 18) /* default; the loader sets Config.HostRoutes */
#define MAX_IFACES 16384 /* slots of pod interfaces */
#define DIRECT_IFINDEX 65536 /* ifindexes below this are found in an array */
#define MAX_LABELS (1 << 20) /* the whole 20-bit label space */
#define MAX_ENDPOINTS 4096
#define ROUTE_CACHE 4096 /* per-CPU entries of the route cache */
#define ENDPOINT_HINTS 8192 /* direct-mapped hints in front of the endpoint hashes */
/* endpoint_vrfs: one bit per (endpoint slot, VRF id), 64 VRFs a word. */
#define ENDPOINT_VRF_WORDS (MAX_VRFS / 64)

/* Kinds of route. */
enum route_kind {
	ROUTE_LOCAL = 1,  /* id is the ifindex of a local pod interface */
	ROUTE_REMOTE = 2, /* id is a next-hop group */
};

/* Encapsulations of a next hop. */
enum encap {
	ENCAP_MPLS_UDP = 1,
	ENCAP_MPLS_MPLS = 2,
};

/* Kinds of local label. */
enum label_kind {
	LABEL_VRF = 1,   /* per-VRF label: look the inner destination up in vrf */
	LABEL_IFACE = 2, /* per-prefix label: deliver to ifindex */
};

/* Drop reasons, counted per VRF (VRF 0 holds drops before a VRF is known). */
enum drop_reason {
	DROP_NO_ROUTE = 0,
	DROP_TTL = 1,
	DROP_UNKNOWN_LABEL = 2,
	DROP_UNKNOWN_ENDPOINT = 3,
	DROP_MALFORMED = 4,
	DROP_MTU = 5,
	DROP_NO_NEIGHBOR = 6, /* endpoint or tunnel not resolved yet */
	DROP_ERROR = 7,       /* a helper failed */
	DROP_MAX = 8,
};

/* tunnel: the single entry of the tunnel map. Addresses and port are in
 * network byte order. */
struct tunnel {
	__u32 source;   /* local underlay address, outer source */
	__u32 ifindex;  /* underlay interface */
	__u8 mac[6];    /* underlay interface MAC, outer source MAC */
	__u16 udp_port; /* MPLSoUDP destination port (6635) */
	__u32 mtu;      /* underlay MTU: largest outer IP packet */
	__u32 flags;    /* TUNNEL_F_* */
	__u32 transport_label; /* MPLSoMPLS transport label accepted here, 0: any */
};

/* TUNNEL_F_MPLS_MPLS: MPLSoMPLS is in use (XDP on the underlay and on the
 * host end of every pod veth). */
#define TUNNEL_F_MPLS_MPLS 1

/* iface: a pod interface attached to a VRF. Pod ingress finds it by
 * host-side ifindex, in the iface_index array (ifindex < DIRECT_IFINDEX)
 * or else the ifaces hash; delivery finds it by slot in iface_slots (routes
 * and labels name slots), so the hot path does no hash lookup. */
struct iface {
	__u32 vrf;
	__u32 slot;
	__u32 ifindex;
	__u8 mac[6];      /* host-side MAC: source of frames sent to the pod */
	__u8 peer_mac[6]; /* pod-side MAC: destination of frames sent to the pod */
	__u32 flags;      /* IFACE_* */
};

/* IFACE_PEER: the interface is the host end of a veth whose pod end is in
 * another network namespace, so a tc ingress program delivers into the
 * pod with bpf_redirect_peer (straight to the pod end's ingress, no
 * veth_xmit and no per-CPU backlog) instead of bpf_redirect. */
#define IFACE_PEER 1

/* route_key: LPM key; prefixlen counts the 32 bits of vrf plus the prefix. */
struct route_key {
	__u32 prefixlen;
	__u32 vrf;  /* network byte order, always fully matched */
	__u32 addr; /* network byte order */
};

/* host_key: key of host_routes, the exact-match table of /32 routes that
 * is looked up before the LPM trie (a /32 is always the longest match).
 * Preallocated: inserting a million entries costs half of what the trie
 * does. */
struct host_key {
	__u32 vrf;  /* host byte order */
	__u32 addr; /* network byte order */
};

struct route {
	__u32 kind; /* enum route_kind */
	__u32 id;   /* interface slot or group */
};

/* route_cache_entry: a per-CPU, direct-mapped cache of route lookups
 * (VRF, destination) → route, in front of host_routes and the trie: a hit
 * is two inlined array accesses instead of a hash-map helper call (about
 * 35 ns here) and, for prefixes, the trie walk. An entry is valid only
 * while gen equals route_gen[0], which the loader bumps after every change
 * to the route tables, so no stale route outlives the call that changed
 * it. tc programs do not nest on one CPU, so a per-CPU entry is never
 * written by two programs at once. */
struct route_cache_entry {
	__u32 vrf;
	__u32 addr;
	__u32 gen;
	struct route r;
};

/* nexthop: one remote path. */
struct nexthop {
	__u32 endpoint; /* slot in the endpoints array */
	__u32 label;    /* VPN label (20 bits) | encap << 24 */
};

/* group: an ECMP set of next hops, shared by every route that uses it. */
struct group {
	__u32 count;
	__u32 pad;
	struct nexthop nexthops[MAX_NEXTHOPS];
};

/* endpoint: a remote tunnel endpoint, by slot; endpoint_index maps its
 * address to the slot. */
struct endpoint {
	__u32 addr;           /* underlay address, network byte order */
	__u8 mac[6];          /* next-hop MAC toward the endpoint, 0 if unresolved */
	__u16 flags;
	__u32 transport_label; /* MPLSoMPLS transport label, 0 for none */
};

/* label_target: where a local VPN label leads (index: label value; kind 0
 * means no such label). flags carries what decapsulation needs to know of
 * the label's VRF without another lookup; the loader rewrites it in every
 * label of a VRF when that changes. 0 (an entry an older object wrote)
 * asks for every check. */
struct label_target {
	__u8 kind;  /* enum label_kind */
	__u8 flags; /* LABEL_F_* */
	__u16 pad;
	__u32 vrf;
	__u32 slot; /* interface slot, LABEL_IFACE only */
};

/* label_target.flags. */
#define LABEL_F_NO_SERVICES 1 /* the VRF has no service: the flow table concerns none of its tunnelled packets (flow.h) */

/* mac_key: key of the endpoint_macs map (source MACs of MPLSoMPLS peers). */
struct mac_key {
	__u8 mac[6];
	__u16 pad;
};

/* endpoint_hint: one entry of the direct-mapped arrays that answer "which
 * endpoint sent this" without a hash-map helper call (a call into the
 * kernel's hash map costs about 35 ns per packet here, an inlined array
 * access a few). The entry for an outer source address is at
 * endpoint_hash(addr) in addr_hints, the one for a source MAC at
 * endpoint_hash(mac) in mac_hints; key holds the address (or the MAC's
 * first four bytes) and key2 the MAC's last two bytes. slot 0 is never an
 * endpoint, so it marks an empty entry. When two endpoints collide, the
 * loader keeps one in the hint and the other is found through the hash map
 * (endpoint_index, endpoint_macs), which stays the complete record. */
struct endpoint_hint {
	__u32 key;
	__u16 key2;
	__u16 pad;
	__u32 slot;
};

/* iface_stats: a pod interface's counters. A drop counts here as well as
 * by reason in its VRF (drops): rx_drops are packets from the pod that the
 * forwarder dropped, tx_drops packets for the pod dropped once the pod was
 * known. Policy counts its own refusals per interface (pol_iface_denied). */
struct iface_stats {
	__u64 rx_packets; /* received from the pod */
	__u64 rx_bytes;
	__u64 tx_packets; /* sent to the pod */
	__u64 tx_bytes;
	__u64 rx_drops;
	__u64 tx_drops;
};

struct endpoint_stats {
	__u64 tx_packets; /* encapsulated toward the endpoint */
	__u64 tx_bytes;
	__u64 rx_packets; /* decapsulated from the endpoint */
	__u64 rx_bytes;
};

struct drops {
	__u64 reason[DROP_MAX];
};

/* meta: what the XDP decapsulator hands to the tc program in the packet
 * metadata area. */
#define META_MAGIC 0x15e1
struct meta {
	__u32 magic;
	__u32 ifindex;
	__u32 flags; /* the target interface's IFACE_* */
};

/* mix32 is the 32-bit finalizer every hash of the forwarder uses (hints,
 * route cache, flow hash). The loader mirrors it (mix32 in
 * services_linux.go). */
static __always_inline __u32 mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

#endif
