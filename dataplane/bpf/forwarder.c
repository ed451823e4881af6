// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Isthmus forwarder: three programs share the maps in maps.h.
 *
 *   pod_ingress       tcx ingress on the host end of each pod veth: VRF
 *                     lookup, local delivery or MPLSoUDP / MPLSoMPLS encap.
 *   underlay_ingress  tcx ingress on the underlay: MPLSoUDP decap, and the
 *                     redirect of frames that underlay_xdp already decapsulated.
 *   underlay_xdp      XDP on the underlay: MPLSoMPLS decap (tc cannot shrink
 *                     non-IP frames); hands the target interface to tc in
 *                     the packet metadata and passes the frame up (XDP
 *                     cannot redirect into a veth's peer; tc can).
 *   pod_xdp           XDP_PASS on the host end of pod veths when MPLSoMPLS is
 *                     in use: an XDP program on a veth turns TSO off on its
 *                     peer, so the pod's stack segments before the veth. The
 *                     kernel cannot segment a TCP GSO frame under a label
 *                     stack pushed by tc, so pods must not send GSO frames
 *                     that may be encapsulated in MPLSoMPLS.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "types.h"
#include "maps.h"
#include "flow.h"
#include "policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Kernel 6.3+ flag that the distribution headers may lack. */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#endif

#define ETH_P_MPLS 0x8847
#define MPLS_BOS 0x100
#define UDP_SPORT_BASE 49152 /* RFC 7510: source port from the ephemeral range */
#define OUTER_TTL 64
#define UDP_OVERHEAD (sizeof(struct iphdr) + sizeof(struct udphdr) + 4)

static __always_inline void count_drop(__u32 vrf, __u32 reason)
{
	if (vrf >= MAX_VRFS)
		vrf = 0;
	struct drops *d = bpf_map_lookup_elem(&vrf_drops, &vrf);
	if (d)
		d->reason[reason & (DROP_MAX - 1)]++;
}

static __always_inline void count_iface(__u32 slot, int to_pod, __u64 bytes)
{
	struct iface_stats *s = bpf_map_lookup_elem(&iface_counters, &slot);
	if (!s)
		return;
	if (to_pod) {
		s->tx_packets++;
		s->tx_bytes += bytes;
	} else {
		s->rx_packets++;
		s->rx_bytes += bytes;
	}
}

/* count_drop_from counts a drop of a packet from a pod: by reason in vrf
 * and on the pod's interface (st, its counters, which pod_ingress looked
 * up once for the packet and the drop). */
static __always_inline void count_drop_from(struct iface_stats *st, __u32 vrf, __u32 reason)
{
	count_drop(vrf, reason);
	if (st)
		st->rx_drops++;
}

/* count_drop_to counts on a pod's interface (by slot) a packet for the pod
 * that is dropped; the caller counts the reason in the VRF. The callers do
 * it where they drop: underlay_ingress has no stack left to carry the pod
 * to a common drop label. */
static __always_inline void count_drop_to(__u32 slot)
{
	struct iface_stats *s = bpf_map_lookup_elem(&iface_counters, &slot);
	if (s)
		s->tx_drops++;
}

static __always_inline void count_endpoint(__u32 slot, int rx, __u64 bytes)
{
	struct endpoint_stats *s = bpf_map_lookup_elem(&endpoint_counters, &slot);
	if (!s)
		return;
	if (rx) {
		s->rx_packets++;
		s->rx_bytes += bytes;
	} else {
		s->tx_packets++;
		s->tx_bytes += bytes;
	}
}

/* endpoint_hash picks the hint entry of an outer source address, or of a
 * MAC given as its first four and last two bytes (key2 = 0 for addresses).
 * The loader mirrors it (endpointHash in hints_linux.go). */
static __always_inline __u32 endpoint_hash(__u32 key, __u32 key2)
{
	return mix32(key ^ (key2 << 16) ^ 0x9e3779b9) & (ENDPOINT_HINTS - 1);
}

/* endpoint_by_addr returns the slot of the endpoint with this outer source
 * address, 0 when there is none: the hint when it matches, else the hash. */
static __always_inline __u32 endpoint_by_addr(__u32 addr)
{
	__u32 h = endpoint_hash(addr, 0);
	struct endpoint_hint *e = bpf_map_lookup_elem(&addr_hints, &h);
	if (e && e->key == addr && e->slot)
		return e->slot;
	__u32 *slot = bpf_map_lookup_elem(&endpoint_index, &addr);
	return slot ? *slot : 0;
}

/* endpoint_by_mac is endpoint_by_addr for the source MAC of MPLSoMPLS. */
static __always_inline __u32 endpoint_by_mac(const __u8 *mac)
{
	__u32 k1 = *(__u32 *)mac;     /* bpf allows unaligned packet loads */
	__u16 k2 = *(__u16 *)(mac + 4);
	__u32 h = endpoint_hash(k1, k2);
	struct endpoint_hint *e = bpf_map_lookup_elem(&mac_hints, &h);
	if (e && e->key == k1 && e->key2 == k2 && e->slot)
		return e->slot;
	struct mac_key mk = {};
	__builtin_memcpy(mk.mac, mac, ETH_ALEN);
	__u32 *slot = bpf_map_lookup_elem(&endpoint_macs, &mk);
	return slot ? *slot : 0;
}

/* deliver hands a packet to a pod interface from tc ingress: straight into
 * the pod end's ingress with bpf_redirect_peer when the interface is the
 * host end of a veth whose pod end is in another namespace (IFACE_PEER),
 * else out of the interface with bpf_redirect (the packet then goes
 * through veth_xmit and the per-CPU backlog). XDP cannot redirect to a
 * peer: underlay_xdp hands the target to underlay_ingress, which does. */
static __always_inline int deliver(__u32 ifindex, __u32 flags)
{
	if (flags & IFACE_PEER)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

/* flow_hash hashes the inner 5-tuple (3-tuple for fragments and protocols
 * without ports) so that one flow always takes one path and one source port. */
static __always_inline __u32 flow_hash(struct iphdr *ip, void *data_end)
{
	__u32 ports = 0;
	if (!(ip->frag_off & bpf_htons(0x3fff)) &&
	    (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
		__u32 *l4 = (void *)ip + (ip->ihl & 0xf) * 4;
		if ((void *)(l4 + 1) <= data_end)
			ports = *l4;
	}
	__u32 h = mix32(ip->saddr ^ 0x9e3779b9);
	h = mix32(h ^ ip->daddr);
	h = mix32(h ^ ports);
	return mix32(h ^ ip->protocol);
}

/* ttl_decrement lowers the IPv4 TTL and patches the checksum incrementally. */
static __always_inline void ttl_decrement(struct iphdr *ip)
{
	__u32 check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xffff));
	ip->ttl--;
}

static __always_inline __u16 ipv4_csum(struct iphdr *ip)
{
	__u16 *p = (__u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += p[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* struct mac is a MAC address as one 4-byte and one 2-byte word: copied
 * through it a MAC takes two loads and two stores, where clang copies a
 * byte array byte by byte (six of each, and shifts to merge them). The
 * kernel allows unaligned packet and map value access where the programs
 * run (x86-64, arm64); the words on the stack are aligned. */
struct mac {
	__u32 hi;
	__u16 lo;
};

static __always_inline struct mac mac_of(const __u8 *p)
{
	struct mac m = {.hi = *(const __u32 *)p, .lo = *(const __u16 *)(p + 4)};
	return m;
}

static __always_inline void mac_put(__u8 *p, struct mac m)
{
	*(__u32 *)p = m.hi;
	*(__u16 *)(p + 4) = m.lo;
}

static __always_inline void set_macs(struct ethhdr *eth, const __u8 *dst, const __u8 *src)
{
	mac_put(eth->h_dest, mac_of(dst));
	mac_put(eth->h_source, mac_of(src));
}

/* route_lookup finds the longest match for daddr in vrf: this CPU's route
 * cache, else the /32 table, then the trie (and the answer is cached). The
 * result may point into the cache entry; callers read it at once. */
static __always_inline struct route *route_lookup(__u32 vrf, __u32 daddr)
{
	__u32 zero = 0;
	__u32 *genp = bpf_map_lookup_elem(&route_gen, &zero);
	if (!genp)
		return 0;
	/* Read the generation before the tables: a change that lands after
	 * this read bumps it, so the entry written below is already stale. */
	__u32 gen = *genp;
	__u32 i = mix32(daddr ^ (vrf * 0x9e3779b9)) & (ROUTE_CACHE - 1);
	struct route_cache_entry *c = bpf_map_lookup_elem(&route_cache, &i);
	if (c && c->addr == daddr && c->vrf == vrf && c->gen == gen && c->r.kind)
		return &c->r;
	struct host_key hk = {.vrf = vrf, .addr = daddr};
	struct route *r = bpf_map_lookup_elem(&host_routes, &hk);
	if (!r) {
		struct route_key key = {.prefixlen = 64, .vrf = bpf_htonl(vrf), .addr = daddr};
		r = bpf_map_lookup_elem(&routes, &key);
	}
	if (r && c) {
		c->vrf = vrf;
		c->addr = daddr;
		c->gen = gen;
		c->r = *r;
	}
	return r;
}

/* count_drop_to_pod counts a packet for addr in vrf on the interface of
 * the pod of vrf that holds it, if any: for a caller that drops before it
 * looks the pod up (the reason it counts in the VRF). */
static __always_inline void count_drop_to_pod(__u32 vrf, __u32 addr)
{
	struct route *r = route_lookup(vrf, addr);
	if (!r || r->kind != ROUTE_LOCAL)
		return;
	__u32 slot = r->id;
	struct iface *dst = bpf_map_lookup_elem(&iface_slots, &slot);
	if (dst && dst->ifindex && dst->vrf == vrf)
		count_drop_to(slot);
}

/* endpoint_allowed says whether the endpoint in slot may send into vrf:
 * whether vrf has routes through it (endpoint_vrfs in maps.h). */
static __always_inline int endpoint_allowed(__u32 slot, __u32 vrf)
{
	if (vrf >= MAX_VRFS)
		return 0;
	__u32 i = slot * ENDPOINT_VRF_WORDS + (vrf >> 6);
	__u64 *w = bpf_map_lookup_elem(&endpoint_vrfs, &i);
	return w && ((*w >> (vrf & 63)) & 1);
}

/* deliver_target resolves a local VPN label (looked up by the caller) and
 * the inner destination to the pod interface to deliver to. It returns a
 * drop reason or -1 with *dst set (*dst is left alone on a drop). */
static __always_inline int deliver_target(struct label_target *lt, __u32 daddr,
					  struct iface **dst)
{
	__u32 slot;
	if (lt->kind == LABEL_IFACE) {
		slot = lt->slot;
	} else {
		struct route *r = route_lookup(lt->vrf, daddr);
		if (!r || r->kind != ROUTE_LOCAL)
			return DROP_NO_ROUTE;
		slot = r->id;
	}
	struct iface *d = bpf_map_lookup_elem(&iface_slots, &slot);
	/* The interface must still be in the label's VRF: a slot that was
	 * reused by another VRF's pod is not a way into that VRF. */
	if (!d || !d->ifindex || d->vrf != lt->vrf)
		return DROP_NO_ROUTE;
	*dst = d;
	return -1;
}

/* label_admits is the first thing both decapsulations do once the bottom
 * label is found: look the label up and check that the sending endpoint
 * (by slot) may send into the label's VRF. Nothing acts on the packet in
 * that VRF before (the flow table included). From the label on, drops
 * count in the label's VRF, which it stores in *vrf. It returns a drop
 * reason or -1 with *lt set. */
static __always_inline int label_admits(__u32 epslot, __u32 label, __u32 *vrf,
					struct label_target **lt)
{
	*lt = bpf_map_lookup_elem(&labels, &label);
	if (!*lt || !(*lt)->kind)
		return DROP_UNKNOWN_LABEL;
	*vrf = (*lt)->vrf;
	if (!endpoint_allowed(epslot, (*lt)->vrf))
		return DROP_UNKNOWN_ENDPOINT;
	return -1;
}

/* label_to_pod is what both decapsulations do with an admitted label:
 * check the inner IPv4 header and its TTL, find the pod interface and
 * decrement the TTL. It returns a drop reason or -1 with *dst set; *dst is
 * also set on a TTL drop for a pod that exists, which counts it. */
static __always_inline int label_to_pod(struct label_target *lt, struct iphdr *inner,
					void *data_end, struct iface **dst)
{
	if ((void *)(inner + 1) > data_end || inner->version != 4 || inner->ihl < 5)
		return DROP_MALFORMED;
	int reason = deliver_target(lt, inner->daddr, dst);
	if (inner->ttl <= 1)
		return DROP_TTL;
	if (reason >= 0)
		return reason;
	ttl_decrement(inner);
	return -1;
}

/* ecn_decapsulate combines the outer ECN field into the inner header as
 * RFC 6040 (normal mode) says: outer CE marks an ECN-capable inner packet
 * CE, outer ECT(1) turns inner ECT(0) into ECT(1), and outer CE over a
 * Not-ECT inner packet is dropped (the congestion mark cannot be passed
 * on). The inner checksum is patched incrementally (RFC 1624). It returns
 * a drop reason or -1. */
static __always_inline int ecn_decapsulate(__u8 outer, struct iphdr *inner)
{
	__u8 in = inner->tos & 3, out;
	if (outer == 3) {
		if (in == 0)
			return DROP_MALFORMED;
		out = 3;
	} else if (outer == 1 && in == 2) {
		out = 1;
	} else {
		return -1;
	}
	if (out == in)
		return -1;
	__u16 old = *(__u16 *)inner;
	inner->tos = (inner->tos & ~3) | out;
	__u32 sum = (__u16)~inner->check;
	sum += (__u16)~old;
	sum += *(__u16 *)inner;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	inner->check = ~sum;
	return -1;
}

static __always_inline int encap_udp(struct __sk_buff *skb, struct tunnel *t,
				     struct endpoint *ep, __u32 endpoint, __u32 label,
				     __u32 hash, __u8 ttl, __u8 tos, __u16 inner_len, int tcp)
{
	if (skb->gso_size || tcp) {
		/* GSO: let the kernel know the headers are a UDP tunnel so it can
		 * segment. FIXED_GSO: the pod MTU already leaves room for the
		 * headers, so segments keep their size and fit the underlay.
		 * TCP sends clones of the segments it keeps for retransmission:
		 * bpf_skb_change_head reallocates a clone's head (skb_cow), while
		 * bpf_skb_adjust_room only needs its own header (skb_cow_head),
		 * which TCP's clones have. */
		__u64 flags = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
			      BPF_F_ADJ_ROOM_ENCAP_L2(4) | BPF_F_ADJ_ROOM_FIXED_GSO;
		if (bpf_skb_adjust_room(skb, UDP_OVERHEAD, BPF_ADJ_ROOM_MAC, flags))
			return -1;
	} else {
		/* One packet: push the room in front; the whole Ethernet header
		 * is rewritten below, so nothing needs to move. */
		if (bpf_skb_change_head(skb, UDP_OVERHEAD, 0))
			return -1;
	}
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 *mpls = (void *)(udp + 1);
	if ((void *)(mpls + 1) > data_end)
		return -1;
	set_macs(eth, ep->mac, t->mac);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = tos;
	/* BIG TCP: a GSO packet over 64 KiB has tot_len 0 (the stack takes
	 * its length from the skb); so do the outer headers, which the
	 * kernel rewrites per segment if the underlay segments it. */
	__u16 outer_len = inner_len ? inner_len + UDP_OVERHEAD : 0;
	ip->tot_len = bpf_htons(outer_len);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF: the underlay never fragments */
	ip->ttl = OUTER_TTL;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = t->source;
	ip->daddr = endpoint;
	ip->check = ipv4_csum(ip);
	udp->source = bpf_htons(UDP_SPORT_BASE | (hash & 0x3fff));
	udp->dest = t->udp_port;
	udp->len = bpf_htons(inner_len ? inner_len + sizeof(*udp) + 4 : 0);
	udp->check = 0; /* RFC 7510 allows a zero checksum over IPv4 */
	*mpls = bpf_htonl((label << 12) | MPLS_BOS | ttl);
	return 0;
}

static __always_inline int encap_mpls(struct __sk_buff *skb, struct tunnel *t,
				      struct endpoint *ep, __u32 label, __u8 ttl)
{
	__u32 transport = ep->transport_label;
	int room = transport ? 8 : 4;
	if (skb->gso_size) {
		if (bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
			return -1;
	} else if (bpf_skb_change_head(skb, room, 0)) {
		return -1; /* the Ethernet header is rewritten whole below */
	}
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 *mpls = (void *)(eth + 1);
	if ((void *)(mpls + 2) > data_end)
		return -1;
	set_macs(eth, ep->mac, t->mac);
	eth->h_proto = bpf_htons(ETH_P_MPLS);
	if (transport) {
		mpls[0] = bpf_htonl((transport << 12) | ttl);
		mpls[1] = bpf_htonl((label << 12) | MPLS_BOS | ttl);
	} else {
		mpls[0] = bpf_htonl((label << 12) | MPLS_BOS | ttl);
	}
	return 0;
}

/* REJECT of tunnelled packets answered over the tunnel (uses the helpers above). */
#include "policy_reject_tunnel.h"

/* Policy on packets through a floating IP (uses the helpers above). */
#include "policy_floating.h"

/* External connectivity: host access, SNAT (uses the helpers above). */
#include "nat.h"

/* A pod's own node reaches it whatever its egress policy (uses nat.h). */
#include "policy_node.h"

/* Services whose external traffic goes to every backend (uses the helpers above). */
#include "service_relay.h"

/* Services over MPLSoMPLS: the flow table in tc after XDP (uses the helpers above). */
#include "service_mpls.h"

SEC("tc")
int pod_ingress(struct __sk_buff *skb)
{
	__u32 in = skb->ifindex;
	struct iface *src = iface_at(in);
	if (!src || src->ifindex != in)
		return TC_ACT_UNSPEC; /* not a pod interface of ours */
	__u32 vrf = src->vrf;
	__u64 bytes = skb->len;
	struct iface_stats *st = bpf_map_lookup_elem(&iface_counters, &src->slot);

	if (skb->data + sizeof(struct ethhdr) + sizeof(struct iphdr) + 8 > skb->data_end)
		bpf_skb_pull_data(skb, sizeof(struct ethhdr) + sizeof(struct iphdr) + 8);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		goto malformed;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return TC_ACT_UNSPEC; /* the host answers for the gateway */
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		goto malformed;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		goto malformed;
	if (st) {
		st->rx_packets++;
		st->rx_bytes += bytes;
	}
	if (ip->ttl <= 1) {
		count_drop_from(st, vrf, DROP_TTL);
		return TC_ACT_SHOT;
	}

	policy_reset(); /* policy.h */

	/* Services and the flow table (flow.h): the packet may be rewritten. */
	if (flow_wanted(vrf, ip)) {
		policy_pre(skb, vrf, sizeof(struct ethhdr)); /* the source before translation */
		int freason = flow_process(skb, vrf, sizeof(struct ethhdr), 0);
		if (freason >= 0) {
			count_drop_from(st, vrf, freason);
			return TC_ACT_SHOT;
		}
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			goto malformed;
	}

	struct route *r = route_lookup(vrf, ip->daddr);
	if (!r) {
		/* No VRF route: the source pod's egress policy (policy.h), in
		 * its own VRF on its own address, before anything below
		 * translates the packet. Its answers to its own node pass
		 * (policy_node.h). */
		if (policy_active(vrf) && !policy_to_node(skb, vrf)) {
			int pact = policy_check(skb, vrf, sizeof(struct ethhdr), POL_NONE, 0);
			if (pact != POLICY_PASS)
				return pact;
		}
		/* A pod whose floating IP is advertised in an external VRF
		 * reaches that VRF's routes from the floating IP (nat.h). */
		int ext = nat_floating_egress(skb, vrf);
		if (ext < 0) {
			count_drop_from(st, vrf, DROP_ERROR);
			return TC_ACT_SHOT;
		}
		/* The call may have written the packet: pointers into it are
		 * stale. */
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			goto malformed;
		if (ext > 0) {
			vrf = ext;
			r = route_lookup(vrf, ip->daddr);
			if (r && r->kind != ROUTE_LOCAL)
				goto routed; /* the egress was decided above */
		}
	}
	if (!r) {
		/* Host access, SNAT or drop (nat.h). */
		int act, nreason = nat_no_route(skb, vrf, &act);
		if (nreason < 0)
			return act;
		count_drop_from(st, vrf, nreason);
		return TC_ACT_SHOT;
	}
	/* Policy (policy.h): the source pod's egress, a local destination's
	 * ingress; drops, rejects and counts itself. */
	if (policy_active(vrf)) {
		int pact = policy_check(skb, vrf, sizeof(struct ethhdr), r->kind == ROUTE_LOCAL ? r->id : POL_NONE, 0);
		if (pact != POLICY_PASS)
			return pact;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			goto malformed;
		r = route_lookup(vrf, ip->daddr); /* a cache hit: r need not live across the call */
		if (!r) {
			count_drop_from(st, vrf, DROP_NO_ROUTE);
			return TC_ACT_SHOT;
		}
	}
routed:

	if (r->kind == ROUTE_LOCAL) {
		__u32 slot = r->id;
		struct iface *dst = bpf_map_lookup_elem(&iface_slots, &slot);
		if (!dst || !dst->ifindex || dst->vrf != vrf) {
			count_drop_from(st, vrf, DROP_NO_ROUTE);
			return TC_ACT_SHOT;
		}
		ttl_decrement(ip);
		set_macs(eth, dst->peer_mac, dst->mac);
		count_iface(slot, 1, bytes);
		return deliver(dst->ifindex, dst->flags);
	}

	__u32 gid = r->id;
	struct group *g = bpf_map_lookup_elem(&groups, &gid);
	if (!g || g->count == 0 || g->count > MAX_NEXTHOPS) {
		count_drop_from(st, vrf, DROP_NO_ROUTE);
		return TC_ACT_SHOT;
	}
	__u32 hash = flow_hash(ip, data_end);
	/* hash * count / 2^32 picks a next hop as evenly as hash % count
	 * from the hash's high bits, with a multiply instead of a divide. */
	__u32 idx = ((__u64)hash * g->count) >> 32;
	asm volatile("" : "+r"(idx)); /* keep the mask for the verifier */
	idx &= MAX_NEXTHOPS - 1;
	struct nexthop nh = g->nexthops[idx];
	struct endpoint *ep = bpf_map_lookup_elem(&endpoints, &nh.endpoint);
	__u32 zero = 0;
	struct tunnel *t = bpf_map_lookup_elem(&tunnel_config, &zero);
	if (!ep || !ep->addr || !t || !t->ifindex ||
	    !(ep->mac[0] | ep->mac[1] | ep->mac[2] | ep->mac[3] | ep->mac[4] | ep->mac[5])) {
		count_drop_from(st, vrf, DROP_NO_NEIGHBOR);
		return TC_ACT_SHOT;
	}
	__u32 encap = nh.label >> 24;
	__u32 label = nh.label & 0xfffff;
	__u16 inner_len = bpf_ntohs(ip->tot_len);
	/* tot_len 0 is a BIG TCP packet (over 64 KiB, GSO) and nothing else. */
	if (!inner_len && (!skb->gso_size || skb->len <= 0xffff + sizeof(struct ethhdr)))
		goto malformed;
	__u32 overhead = encap == ENCAP_MPLS_UDP ? UDP_OVERHEAD : (ep->transport_label ? 8 : 4);
	/* GSO packets are segmented to the pod MTU, which leaves room for the
	 * encapsulation; anything else that does not fit is dropped and counted
	 * (no ICMP fragmentation-needed is generated). */
	if (!skb->gso_size && inner_len + overhead > t->mtu) {
		count_drop_from(st, vrf, DROP_MTU);
		return TC_ACT_SHOT;
	}
	ttl_decrement(ip);
	__u8 ttl = ip->ttl;
	__u8 tos = ip->tos;

	int err;
	if (encap == ENCAP_MPLS_UDP)
		err = encap_udp(skb, t, ep, ep->addr, label, hash, ttl, tos, inner_len,
				ip->protocol == IPPROTO_TCP);
	else
		err = encap_mpls(skb, t, ep, label, ttl);
	if (err) {
		count_drop_from(st, vrf, DROP_ERROR);
		return TC_ACT_SHOT;
	}
	count_endpoint(nh.endpoint, 0, bytes);
	return bpf_redirect(t->ifindex, 0);

malformed:
	count_drop_from(st, vrf, DROP_MALFORMED);
	return TC_ACT_SHOT;
}

/* nat_in_use says whether NAT can concern a packet from the underlay:
 * whether any VRF translates (floating = 0) or a floating IP is bound
 * (floating = 1), as nat_underlay and nat_floating_decap would find first
 * themselves (nat.h). Decapsulation asks before calling them, so that a
 * host without NAT pays one inlined array read instead of two calls. */
static __always_inline int nat_in_use(int floating)
{
	__u32 zero = 0;
	struct nat_global *g = bpf_map_lookup_elem(&nat_host, &zero);
	return g && (g->floating || (!floating && g->min));
}

SEC("tc")
int underlay_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct meta *m = (void *)(long)skb->data_meta;
	if ((void *)(m + 1) <= data && m->magic == META_MAGIC)
		return policy_reject_tunnel(skb, policy_deliver(skb, m->ifindex, m->flags, 0)); /* policy.h, then deliver */
	if ((void *)(m + 1) <= data && m->magic == META_FLOW_MAGIC)
		return svc_mpls_ingress(skb, m->ifindex);
	/* Replies to source-NATed flows (nat.h). */
	if (nat_in_use(0)) {
		int nact = nat_underlay(skb);
		if (nact < TC_ACT_UNSPEC) /* through a floating IP */
			return policy_floating_deliver(skb, nact);
		if (nact != TC_ACT_UNSPEC)
			return nact;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;

	__u32 zero = 0;
	struct tunnel *t = bpf_map_lookup_elem(&tunnel_config, &zero);
	if (!t)
		return TC_ACT_UNSPEC;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->daddr != t->source)
		return TC_ACT_UNSPEC;
	__u32 ihl = (ip->ihl & 0xf) * 4;
	if (ihl < sizeof(*ip))
		return TC_ACT_UNSPEC;
	struct udphdr *udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > data_end || udp->dest != t->udp_port)
		return TC_ACT_UNSPEC;

	/* From here on the packet is ours: deliver it or count why not.
	 * The outer header must be plain: no options, no fragment, lengths
	 * that match the frame. */
	__u32 vrf = 0;
	int reason = DROP_MALFORMED;
	__u32 tot = bpf_ntohs(ip->tot_len);
	/* BIG TCP: a GSO packet over 64 KiB carries tot_len 0 and a UDP
	 * length of 0 (or, from a kernel's GRO, the length's low 16 bits);
	 * its length is the skb's. A GSO packet has no trailing bytes: its
	 * length must be exactly what the header says. */
	int big = !tot && skb->gso_size && skb->len > 0xffff + sizeof(*eth);
	if (big)
		tot = skb->len - sizeof(*eth);
	if (ihl != sizeof(*ip) || ip->version != 4 || (ip->frag_off & bpf_htons(0x3fff)) ||
	    tot < sizeof(*ip) + sizeof(*udp) + 4 || tot > skb->len - sizeof(*eth) ||
	    (skb->gso_size && tot != skb->len - sizeof(*eth)) ||
	    (!big && bpf_ntohs(udp->len) != tot - sizeof(*ip)) ||
	    (big && udp->len && bpf_ntohs(udp->len) != ((tot - sizeof(*ip)) & 0xffff)))
		goto drop;
	__u32 epslot = endpoint_by_addr(ip->saddr);
	if (!epslot) {
		reason = DROP_UNKNOWN_ENDPOINT;
		goto drop;
	}
	__u32 *mpls = (void *)(udp + 1);
	struct iphdr *inner = (void *)(mpls + 1);
	if ((void *)(mpls + 1) > data_end)
		goto drop;
	__u32 lse = bpf_ntohl(*mpls);
	if (!(lse & MPLS_BOS))
		goto drop;
	struct label_target *lt;
	reason = label_admits(epslot, lse >> 12, &vrf, &lt);
	if (reason >= 0)
		goto drop;
	/* policy.h: forget an earlier packet's note where a check can follow
	 * (a VRF without policy is never checked, and notes nothing). */
	if (policy_active(vrf))
		policy_reset();
	/* Services and the flow table (flow.h) on the inner packet; a flow
	 * relayed to a backend's host goes back out (service_relay.h). */
	__u32 fvrf, relay = 0;
	if (flow_label_wanted(lt, inner, data_end, &fvrf)) {
		policy_pre(skb, fvrf, (void *)inner - data); /* the source before translation */
		reason = flow_process_from(skb, fvrf, (void *)inner - data, epslot, &relay);
		if (reason == FLOW_RELAY) {
			reason = svc_relay(skb, t, fvrf, relay, epslot);
			if (reason >= 0)
				goto drop;
			return bpf_redirect(t->ifindex, 0);
		}
		if (reason >= 0)
			goto drop;
		reason = DROP_MALFORMED;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
		ip = (void *)(eth + 1);
		inner = data + sizeof(*eth) + ihl + sizeof(*udp) + 4;
		if ((void *)(ip + 1) > data_end)
			goto drop;
	}
	/* A floating IP advertised in the label's VRF: translated to its
	 * pod, delivered in the pod's VRF (nat.h). */
	int fvrf2 = nat_in_use(1) ? nat_floating_decap(skb, (void *)inner - data, vrf) : 0;
	if (fvrf2 != 0) {
		reason = DROP_ERROR;
		if (fvrf2 < 0 || !(lt = nat_floating_label(fvrf2)))
			goto drop;
		if (!policy_active(vrf)) /* nothing was reset above */
			policy_reset();
		vrf = fvrf2;
	}
	/* The call may have written the packet: pointers into it are stale. */
	reason = DROP_MALFORMED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	inner = data + sizeof(*eth) + ihl + sizeof(*udp) + 4;
	if ((void *)(ip + 1) > data_end)
		goto drop;
	struct iface *dst = 0;
	reason = label_to_pod(lt, inner, data_end, &dst);
	if (reason >= 0) {
		if (dst) /* TTL: counted on the pod it was for */
			count_drop_to(dst->slot);
		goto drop;
	}
	reason = ecn_decapsulate(ip->tos & 3, inner);
	if (reason >= 0) {
		count_drop_to(dst->slot);
		goto drop;
	}
	__u32 ifindex = dst->ifindex, slot = dst->slot, flags = dst->flags;
	struct mac dmac = mac_of(dst->peer_mac), smac = mac_of(dst->mac);
	__u64 outer_bytes = skb->len;
	__s32 shrink = -(__s32)(ihl + sizeof(*udp) + 4);
	/* GSO packets keep SKB_GSO_UDP_TUNNEL (the kernel's flag to clear it
	 * is newer than 6.18); veth and the pod's stack accept that. */
	if (bpf_skb_adjust_room(skb, shrink, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_DECAP_L3_IPV4)) {
		reason = DROP_ERROR;
		count_drop_to(slot);
		goto drop;
	}
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end) {
		reason = DROP_ERROR;
		count_drop_to(slot);
		goto drop;
	}
	mac_put(eth->h_dest, dmac);
	mac_put(eth->h_source, smac);
	/* Policy (policy.h): the VRF's tunnel ingress, the pod's ingress. */
	if (policy_active(vrf)) {
		int pact = policy_check(skb, vrf, sizeof(struct ethhdr), slot, 1);
		if (pact != POLICY_PASS)
			return policy_reject_tunnel(skb, pact); /* a REJECT answered over the tunnel */
	}
	count_endpoint(epslot, 1, outer_bytes);
	count_iface(slot, 1, skb->len);
	return deliver(ifindex, flags);

drop:
	count_drop(vrf, reason);
	return TC_ACT_SHOT;
}

SEC("xdp")
int underlay_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_MPLS))
		return XDP_PASS;

	__u32 vrf = 0;
	int reason;
	__u32 epslot = endpoint_by_mac(eth->h_source);
	if (!epslot) {
		reason = DROP_UNKNOWN_ENDPOINT;
		goto drop;
	}
	__u32 *mpls = (void *)(eth + 1);
	if ((void *)(mpls + 1) > data_end) {
		reason = DROP_MALFORMED;
		goto drop;
	}
	/* One VPN label, or the transport label this host accepts (any, when
	 * none is configured) and the VPN label. */
	int depth = 1;
	__u32 lse = bpf_ntohl(mpls[0]);
	if (!(lse & MPLS_BOS)) {
		if ((void *)(mpls + 2) > data_end) {
			reason = DROP_MALFORMED;
			goto drop;
		}
		__u32 zero = 0;
		struct tunnel *t = bpf_map_lookup_elem(&tunnel_config, &zero);
		if (t && t->transport_label && t->transport_label != lse >> 12) {
			reason = DROP_UNKNOWN_LABEL;
			goto drop;
		}
		lse = bpf_ntohl(mpls[1]);
		depth = 2;
		if (!(lse & MPLS_BOS)) {
			reason = DROP_MALFORMED;
			goto drop;
		}
	}
	struct iphdr *inner = (void *)(mpls + depth);
	struct label_target *lt;
	reason = label_admits(epslot, lse >> 12, &vrf, &lt);
	if (reason >= 0)
		goto drop;
	/* A packet the flow table may concern goes on to tc popped, with its
	 * label in the metadata (service_mpls.h). */
	__u32 fvrf;
	if (flow_label_wanted(lt, inner, data_end, &fvrf)) {
		__u32 label = lse >> 12;
		__u8 emac[2 * ETH_ALEN];
		__builtin_memcpy(emac, eth, sizeof(emac));
		count_endpoint(epslot, 1, data_end - data);
		reason = DROP_ERROR;
		if (bpf_xdp_adjust_head(ctx, depth * 4) ||
		    bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct meta)))
			goto drop;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		struct meta *fm = (void *)(long)ctx->data_meta;
		eth = data;
		if ((void *)(eth + 1) > data_end || (void *)(fm + 1) > data)
			goto drop;
		__builtin_memcpy(eth, emac, sizeof(emac));
		eth->h_proto = bpf_htons(ETH_P_IP);
		fm->magic = META_FLOW_MAGIC;
		fm->ifindex = label;
		fm->flags = epslot;
		return XDP_PASS;
	}
	struct iface *dst = 0;
	reason = label_to_pod(lt, inner, data_end, &dst);
	if (reason >= 0) {
		if (dst) /* TTL: counted on the pod it was for */
			count_drop_to(dst->slot);
		goto drop;
	}
	__u32 ifindex = dst->ifindex, slot = dst->slot, flags = dst->flags;
	struct mac dmac = mac_of(dst->peer_mac), smac = mac_of(dst->mac);
	__u64 outer_bytes = data_end - data;
	count_endpoint(epslot, 1, outer_bytes);

	if (bpf_xdp_adjust_head(ctx, depth * 4) || bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct meta))) {
		reason = DROP_ERROR;
		count_drop_to(slot);
		goto drop;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	struct meta *m = (void *)(long)ctx->data_meta;
	eth = data;
	if ((void *)(eth + 1) > data_end || (void *)(m + 1) > data) {
		reason = DROP_ERROR;
		count_drop_to(slot);
		goto drop;
	}
	mac_put(eth->h_dest, dmac);
	mac_put(eth->h_source, smac);
	eth->h_proto = bpf_htons(ETH_P_IP);
	m->magic = META_MAGIC;
	m->ifindex = ifindex;
	m->flags = flags; /* counted once delivered (policy_deliver) */
	return XDP_PASS;

drop:
	count_drop(vrf, reason);
	return XDP_DROP;
}

SEC("xdp")
int pod_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}
