/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The reply half of external connectivity (nat.h, which includes this
 * after its maps and helpers): packets arriving on the underlay for a
 * source-NATed flow (TCP, UDP, ICMP echo replies, ICMP errors quoting a
 * translated packet) or for a floating IP are translated back and
 * delivered to the pod.
 */
#ifndef ISTHMUS_NAT_REPLY_H
#define ISTHMUS_NAT_REPLY_H

/* nat_error_quote translates an ICMP error the host received about a
 * packet SNAT sent: the quoted packet (SNAT address:port → remote) is the
 * forward direction, so the reply entry is keyed by its reverse. The
 * error's destination and the quoted source become the pod's address and
 * port; the outer IPv4, quoted IPv4, quoted L4 (when quoted) and ICMP
 * checksums are patched. It returns the pod's VRF (> 0), 0 when the error
 * concerns no flow of ours, or -1 on a failed rewrite. */
static __always_inline int nat_error_quote(struct __sk_buff *skb, struct nat_scratch *s, __u32 l3,
					   __u32 l4, __u32 daddr, __u32 *pod)
{
	__u32 icmp_csum = l4 + offsetof(struct icmp_hdr, checksum);
	__u32 q3 = l4 + sizeof(struct icmp_hdr);
	struct iphdr *qh = (void *)s->q;
	if (bpf_skb_load_bytes(skb, q3, qh, sizeof(*qh)) || qh->saddr != daddr)
		return 0;
	__u32 qsaddr = qh->saddr, qdaddr = qh->daddr;
	__u8 qproto = qh->protocol;
	__u32 q4 = q3 + (qh->ihl & 0xf) * 4;
	__u16 qp[2];
	if (bpf_skb_load_bytes(skb, q4, qp, sizeof(qp)))
		return 0;
	struct flow_key *rkp = &s->rkey;
	__builtin_memset(rkp, 0, sizeof(*rkp));
	rkp->saddr = qdaddr;
	rkp->daddr = qsaddr;
	rkp->proto = qproto;
	__u32 qport_off, qcsum_off;
	if (qproto == IPPROTO_ICMP) {
		/* The quoted echo request: type, code, checksum, identifier. */
		__u16 id;
		if (bpf_skb_load_bytes(skb, q4 + 4, &id, 2) || qp[0] != bpf_htons(ICMP_ECHO << 8))
			return 0;
		rkp->sport = id;
		qport_off = q4 + 4;
		qcsum_off = q4 + 2;
	} else if (qproto == IPPROTO_TCP || qproto == IPPROTO_UDP) {
		rkp->sport = qp[1];
		rkp->dport = qp[0];
		qport_off = q4;
		qcsum_off = q4 + (qproto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
							   : offsetof(struct udphdr, check));
	} else {
		return 0;
	}
	struct flow *f = bpf_map_lookup_elem(&flows, rkp);
	if (!f || !(f->flags & FLOW_F_EXTERNAL) || f->nat != NAT_DST)
		return 0;
	__u32 vrf = f->reverse.vrf, new_addr = f->nat_addr, old_addr = qsaddr;
	__u16 new_port = f->nat_port, old_port = qproto == IPPROTO_ICMP ? rkp->sport : rkp->dport;
	/* Quoted L4 checksum: TCP and UDP cover the pseudo-header and port,
	 * the quoted echo its identifier only. */
	__u16 qcsum_old, qcsum_new;
	if (!bpf_skb_load_bytes(skb, qcsum_off, &qcsum_old, 2) &&
	    !(qproto == IPPROTO_UDP && qcsum_old == 0)) {
		__u32 sum = (__u16)~qcsum_old;
		if (qproto != IPPROTO_ICMP) {
			sum += (__u16)~(old_addr & 0xffff);
			sum += (__u16)~(old_addr >> 16);
			sum += new_addr & 0xffff;
			sum += new_addr >> 16;
		}
		sum += (__u16)~old_port;
		sum += new_port;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		qcsum_new = ~sum;
		if (bpf_skb_store_bytes(skb, qcsum_off, &qcsum_new, 2, 0) ||
		    bpf_l4_csum_replace(skb, icmp_csum, qcsum_old, qcsum_new, 2))
			return -1;
	}
	/* The quoted IPv4 checksum absorbs the address change, so the ICMP
	 * checksum sees only the port. */
	if (bpf_l3_csum_replace(skb, q3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
	    bpf_skb_store_bytes(skb, q3 + offsetof(struct iphdr, saddr), &new_addr, 4, 0) ||
	    bpf_skb_store_bytes(skb, qport_off, &new_port, 2, 0) ||
	    bpf_l4_csum_replace(skb, icmp_csum, old_port, new_port, 2) ||
	    bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), daddr, new_addr, 4) ||
	    bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, daddr), &new_addr, 4, 0))
		return -1;
	flow_touch(f, 0);
	*pod = new_addr;
	return vrf;
}

/* nat_underlay handles a packet arriving on the underlay that may be the
 * reply to a source-NATed flow (TCP or UDP to a port of a SNAT range, an
 * ICMP echo reply or error): it is translated back and delivered to the
 * pod. It returns the tc verdict, TC_ACT_UNSPEC (-1) for packets that are
 * not ours, which it leaves untouched for the caller to go on with, or
 * NAT_POLICY_DELIVER(slot) for a packet through a floating IP or a reply
 * of a source-NATed flow in a VRF with policy, which the caller delivers
 * once policy lets it (policy_floating.h). */
static __noinline int nat_underlay(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct nat_global *pr = bpf_map_lookup_elem(&nat_host, &zero);
	if (!pr || (!pr->min && !pr->floating))
		return -1; /* no VRF translates */
	struct nat_scratch *s = bpf_map_lookup_elem(&nat_scratch, &zero);
	if (!s)
		return -1;
	__u32 l3 = sizeof(struct ethhdr);
	struct iphdr *ip = (void *)s->ip;
	__u16 proto;
	if (bpf_skb_load_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, 2) ||
	    proto != bpf_htons(ETH_P_IP) || bpf_skb_load_bytes(skb, l3, ip, sizeof(*ip)) ||
	    ip->version != 4)
		return -1;
	__u32 l4 = l3 + (ip->ihl & 0xf) * 4;
	__u16 ports[2];
	__u32 bits = 0, vrf, pod, floating = 0;
	struct flow *f = 0;
	if (pr->floating) {
		struct floating_pod *fp = bpf_map_lookup_elem(&floating_in, &ip->daddr);
		if (fp && !fp->ext) { /* a VPNv4 one arrives encapsulated (nat_floating_decap) */
			vrf = fp->vrf;
			pod = fp->pod;
			if (nat_floating_rewrite(skb, ip, l3, 1, pod)) {
				count_drop(vrf, DROP_ERROR);
				return TC_ACT_SHOT;
			}
			floating = 1;
			goto deliver;
		}
	}
	if (ip->protocol == IPPROTO_ICMP && !(ip->frag_off & bpf_htons(0x3fff))) {
		struct icmp_hdr ic;
		if (bpf_skb_load_bytes(skb, l4, &ic, sizeof(ic)))
			return -1;
		if (icmp_is_error(ic.type)) {
			int v = nat_error_quote(skb, s, l3, l4, ip->daddr, &pod);
			if (v == 0)
				return -1;
			if (v < 0) {
				count_drop(0, DROP_ERROR); /* half rewritten: the pod's VRF is not known */
				return TC_ACT_SHOT;
			}
			vrf = v;
			goto deliver;
		}
	} else if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		__u16 dport;
		if (bpf_skb_load_bytes(skb, l4 + 2, &dport, 2))
			return -1;
		__u16 port = bpf_ntohs(dport);
		if (port < pr->min || port > pr->max)
			return -1;
		/* The tunnel's own port stays the tunnel's. */
		struct tunnel *t = bpf_map_lookup_elem(&tunnel_config, &zero);
		if (t && ip->protocol == IPPROTO_UDP && dport == t->udp_port && ip->daddr == t->source)
			return -1;
	} else {
		return -1;
	}
	if (nat_l4(skb, ip, l4, 0, ports, &bits))
		return -1;
	struct flow_key *k = &s->key;
	__builtin_memset(k, 0, sizeof(*k));
	k->saddr = ip->saddr;
	k->daddr = ip->daddr;
	k->sport = ports[0];
	k->dport = ports[1];
	k->proto = ip->protocol;
	f = bpf_map_lookup_elem(&flows, k);
	if (!f || !(f->flags & FLOW_F_EXTERNAL) || f->nat != NAT_DST)
		return -1;
	flow_touch(f, bits);
	vrf = f->reverse.vrf;
	pod = f->nat_addr;
	if (nat_rewrite_any(skb, l3, l4, ip->protocol, 1, ip->daddr, pod, ports[ip->protocol == IPPROTO_ICMP ? 0 : 1],
			    f->nat_port)) {
		count_drop(vrf, DROP_ERROR);
		return TC_ACT_SHOT;
	}
deliver:
	if (ip->ttl <= 1) {
		count_drop(vrf, DROP_TTL);
		count_drop_to_pod(vrf, pod); /* forwarder.c */
		return TC_ACT_SHOT;
	}
	struct route *r = route_lookup(vrf, pod);
	if (!r || r->kind != ROUTE_LOCAL) {
		count_drop(vrf, DROP_NO_ROUTE);
		return TC_ACT_SHOT;
	}
	__u32 slot = r->id;
	struct iface *dst = bpf_map_lookup_elem(&iface_slots, &slot);
	if (!dst || !dst->ifindex || dst->vrf != vrf) {
		count_drop(vrf, DROP_NO_ROUTE);
		return TC_ACT_SHOT;
	}
	if (nat_ttl_decrement(skb, l3, ip->ttl, ip->protocol) ||
	    bpf_skb_store_bytes(skb, 0, dst->peer_mac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, dst->mac, ETH_ALEN, 0)) {
		count_drop(vrf, DROP_ERROR);
		count_drop_to(slot); /* forwarder.c */
		return TC_ACT_SHOT;
	}
	nat_count(vrf, NAT_TRANSLATED);
	/* Through a floating IP, or a reply of a source-NATed flow in a VRF
	 * with policy: policy first (policy_floating.h), which counts it. A
	 * reply finds its flow's entry, decided again (the pod's egress) when
	 * a change made it stale. */
	if (floating || policy_active(vrf))
		return NAT_POLICY_DELIVER(slot);
	count_iface(slot, 1, skb->len);
	return deliver(dst->ifindex, dst->flags);
}

#endif
