/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * External traffic to every backend (SERVICE_F_EXT_ALL, flow.h).
 *
 * A host that receives a packet for a service over the tunnel, from a
 * sender that does not serve the service itself (the data center), may
 * pick a backend of another host. It cannot translate the packet there:
 * the reply would leave that host with the backend's address. So it
 * carries the packet on, untranslated, to the backend's host, with the
 * label that host advertised for the service address: the outer headers
 * are rewritten in place (MPLSoUDP to MPLSoUDP, same length). The
 * backend's host sees a packet from a host that serves the service, so it
 * takes a local backend (no second hop, no loop), translates, and answers
 * the client directly, as for traffic the data center sent to it.
 *
 * Which host is the backend's: the endpoint of the backend's /32 route.
 * Which label: that endpoint's next hop in the service address's route
 * (the hosts that advertise the service). Included by forwarder.c after
 * the route lookup and the encapsulation helpers it uses.
 */
#ifndef ISTHMUS_SERVICE_RELAY_H
#define ISTHMUS_SERVICE_RELAY_H

/* svc_vip_group returns the next-hop group of the route to the service
 * address vip (the hosts that advertise it), or 0. */
static __always_inline struct group *svc_vip_group(__u32 vrf, __u32 vip)
{
	struct route *r = route_lookup(vrf, vip);
	if (!r || r->kind != ROUTE_REMOTE)
		return 0;
	__u32 id = r->id;
	return bpf_map_lookup_elem(&groups, &id);
}

/* svc_from_server reports whether the endpoint slot epslot advertises the
 * service address vip: a packet it sent was carried on by a host that
 * picked one of our backends, and must not travel further. */
static __always_inline int svc_from_server(__u32 vrf, __u32 vip, __u32 epslot)
{
	struct group *g = svc_vip_group(vrf, vip);
	if (!g)
		return 0;
	__u32 n = g->count;
#pragma unroll
	for (int i = 0; i < MAX_NEXTHOPS; i++) {
		if (i < n && g->nexthops[i].endpoint == epslot)
			return 1;
	}
	return 0;
}

/* svc_relay_hop finds how to reach the host of a backend with the service
 * address: 0 when the backend is a pod of this host, 1 with *hop set (the
 * host's endpoint slot and its label for vip), -1 when no host that
 * advertises vip leads to the backend. */
static __always_inline int svc_relay_hop(__u32 vrf, __u32 vip, __u32 backend_addr,
					 struct nexthop *hop)
{
	struct route *r = route_lookup(vrf, backend_addr);
	if (!r)
		return -1;
	__u32 kind = r->kind, id = r->id;
	if (kind == ROUTE_LOCAL)
		return 0;
	if (kind != ROUTE_REMOTE)
		return -1;
	struct group *bg = bpf_map_lookup_elem(&groups, &id);
	if (!bg || !bg->count)
		return -1;
	__u32 ep = bg->nexthops[0].endpoint;
	struct group *g = svc_vip_group(vrf, vip);
	if (!g)
		return -1;
	__u32 n = g->count;
#pragma unroll
	for (int i = 0; i < MAX_NEXTHOPS; i++) {
		if (i < n && g->nexthops[i].endpoint == ep) {
			*hop = g->nexthops[i];
			return 1;
		}
	}
	return -1;
}

/* svc_relay carries the MPLSoUDP packet of a relayed flow (flow.h,
 * NAT_RELAY) to the host of backend slot b: new outer addresses, MACs,
 * source port and label, inner TTL decremented, counted as received from
 * epslot and sent to the new endpoint. The outer header has no options
 * (underlay_ingress checked). It returns -1 (the caller redirects out of
 * the underlay) or a drop reason. */
static __always_inline int svc_relay(struct __sk_buff *skb, struct tunnel *t, __u32 vrf, __u32 b,
				     __u32 epslot)
{
	struct backend *be = bpf_map_lookup_elem(&backends, &b);
	if (!be || !be->addr)
		return DROP_NO_ROUTE;
	__u32 backend_addr = be->addr;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 *mpls = (void *)(udp + 1);
	struct iphdr *inner = (void *)(mpls + 1);
	if ((void *)(inner + 1) > data_end)
		return DROP_MALFORMED;
	if (inner->ttl <= 1)
		return DROP_TTL;
	struct nexthop hop;
	if (svc_relay_hop(vrf, inner->daddr, backend_addr, &hop) <= 0)
		return DROP_NO_ROUTE;
	if (hop.label >> 24 != ENCAP_MPLS_UDP)
		return DROP_NO_ROUTE; /* services are received over MPLSoUDP only */
	__u32 slot = hop.endpoint;
	struct endpoint *ep = bpf_map_lookup_elem(&endpoints, &slot);
	if (!ep || !ep->addr ||
	    !(ep->mac[0] | ep->mac[1] | ep->mac[2] | ep->mac[3] | ep->mac[4] | ep->mac[5]))
		return DROP_NO_NEIGHBOR;
	__u32 hash = flow_hash(inner, data_end);
	ttl_decrement(inner);
	set_macs(eth, ep->mac, t->mac);
	ip->saddr = t->source;
	ip->daddr = ep->addr;
	ip->ttl = OUTER_TTL;
	ip->check = 0;
	ip->check = ipv4_csum(ip);
	udp->source = bpf_htons(UDP_SPORT_BASE | (hash & 0x3fff));
	udp->check = 0;
	*mpls = bpf_htonl(((hop.label & 0xfffff) << 12) | MPLS_BOS | inner->ttl);
	count_endpoint(epslot, 1, skb->len);
	count_endpoint(slot, 0, skb->len);
	return -1;
}

#endif
