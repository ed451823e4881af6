/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * REJECT of a packet that arrived over the tunnel (policy.h decides, this
 * answers). A packet refused with REJECT by the VRF's tunnel ingress or by
 * the destination pod's ingress after decapsulation is turned into the
 * answer (pol_reject: a TCP RST or an ICMP destination unreachable, code
 * 13, from the refused destination to the sender) and sent back to the
 * sender's host the way a pod's packet to the sender would go: the route
 * the VRF has for the sender's address, a next hop of its group (by the
 * answer's own hash), that endpoint's encapsulation (MPLSoUDP or
 * MPLSoMPLS) and the label it advertised. Counted per VRF: answers sent,
 * and answers that could not be (no route to the sender through the
 * tunnel, no neighbor, a failed rewrite; the packet is then dropped as it
 * was before). forwarder.c includes this after the encapsulation helpers.
 */
#ifndef ISTHMUS_POLICY_REJECT_TUNNEL_H
#define ISTHMUS_POLICY_REJECT_TUNNEL_H

/* pol_tunnel_answers: per VRF, REJECT answers to tunnelled packets. */
struct pol_tunnel_answers {
	__u64 sent;   /* encapsulated toward the sender's host */
	__u64 unsent; /* no way back: the refused packet was only dropped */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VRFS);
	__type(key, __u32);
	__type(value, struct pol_tunnel_answers);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_tunnel_answers SEC(".maps");

/* pol_tunnel_send encapsulates the answer pol_reject left at the start
 * of the frame (Ethernet, IPv4) toward the host vrf routes its
 * destination to. It returns the tc action, or -1 when there is no way
 * back. */
static __always_inline int pol_tunnel_send(struct __sk_buff *skb, __u32 vrf)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > data_end)
		return -1;
	struct route *r = route_lookup(vrf, ip->daddr);
	if (!r || r->kind != ROUTE_REMOTE)
		return -1;
	__u32 gid = r->id;
	struct group *g = bpf_map_lookup_elem(&groups, &gid);
	if (!g || g->count == 0 || g->count > MAX_NEXTHOPS)
		return -1;
	__u32 hash = flow_hash(ip, data_end);
	__u32 idx = ((__u64)hash * g->count) >> 32;
	asm volatile("" : "+r"(idx)); /* keep the mask for the verifier */
	idx &= MAX_NEXTHOPS - 1;
	__u32 epslot = g->nexthops[idx].endpoint;
	__u32 nhlabel = g->nexthops[idx].label;
	struct endpoint *ep = bpf_map_lookup_elem(&endpoints, &epslot);
	__u32 zero = 0;
	struct tunnel *t = bpf_map_lookup_elem(&tunnel_config, &zero);
	if (!ep || !ep->addr || !t || !t->ifindex ||
	    !(ep->mac[0] | ep->mac[1] | ep->mac[2] | ep->mac[3] | ep->mac[4] | ep->mac[5]))
		return -1;
	__u32 label = nhlabel & 0xfffff;
	__u16 inner_len = bpf_ntohs(ip->tot_len);
	__u8 ttl = ip->ttl;
	int err;
	if (nhlabel >> 24 == ENCAP_MPLS_UDP)
		err = encap_udp(skb, t, ep, ep->addr, label, hash, ttl, 0, inner_len, 0);
	else
		err = encap_mpls(skb, t, ep, label, ttl);
	if (err)
		return -1;
	count_endpoint(epslot, 0, skb->len);
	return bpf_redirect(t->ifindex, 0);
}

/* policy_reject_tunnel answers the tunnelled packet policy_check just
 * refused with REJECT (what it left in this CPU's pol_work says so), and
 * returns the tc action; any other action act is returned as it is. A
 * global function: the programs that call it keep nothing across it. */
__noinline int policy_reject_tunnel(struct __sk_buff *skb, int act)
{
	struct pol_work *x = pol_work();
	if (act != TC_ACT_SHOT || !x || !x->from_tunnel || x->dc.verdict != VERDICT_REJECT)
		return act;
	__u32 vrf = x->vrf;
	if (vrf >= MAX_VRFS)
		return TC_ACT_SHOT;
	struct pol_tunnel_answers *c = bpf_map_lookup_elem(&pol_tunnel_answers, &vrf);
	/* pol_reject refuses to answer an ICMP error, a reset, a fragment,
	 * a GSO packet or IP options: those are dropped, as on a pod's host. */
	if (pol_reject(skb, x, sizeof(struct ethhdr), x->dc.reject))
		return TC_ACT_SHOT;
	int ret = pol_tunnel_send(skb, vrf);
	if (c) {
		if (ret < 0)
			c->unsent++;
		else
			c->sent++;
	}
	return ret < 0 ? TC_ACT_SHOT : ret;
}

#endif
