/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Services over MPLSoMPLS.
 *
 * MPLSoMPLS is decapsulated in XDP (underlay_xdp), but the flow table
 * needs an skb (its rewrites use the checksum helpers). So underlay_xdp
 * hands a packet the flow table may concern (flow_label_wanted: to a
 * service address, from a backend, or ICMP) to underlay_ingress with its
 * labels popped and META_FLOW_MAGIC, the label and the sending endpoint's
 * slot in the packet metadata; svc_mpls_ingress then runs the flow table
 * on it and delivers it as decapsulation does. New flows from the tunnel
 * take local backends only here (carrying a packet on to another host is
 * MPLSoUDP only).
 */
#ifndef ISTHMUS_SERVICE_MPLS_H
#define ISTHMUS_SERVICE_MPLS_H

#define META_FLOW_MAGIC 0x15e2 /* meta: ifindex is the label, flags the endpoint slot */

/* svc_mpls_ingress finishes, in tc, the decapsulation of an MPLSoMPLS
 * packet that underlay_xdp popped and handed over (the label was admitted
 * there and the endpoint counted): the flow table, then the label's
 * delivery (TTL, interface of the label's VRF, MACs). */
static __always_inline int svc_mpls_ingress(struct __sk_buff *skb, __u32 label)
{
	__u32 vrf = 0;
	int reason = DROP_UNKNOWN_LABEL;
	struct label_target *lt = bpf_map_lookup_elem(&labels, &label);
	if (!lt || !lt->kind)
		goto drop;
	vrf = lt->vrf;
	__u32 relay = 0;
	policy_reset(); /* policy.h: the source before translation */
	policy_pre(skb, vrf, sizeof(struct ethhdr));
	reason = flow_process_from(skb, vrf, sizeof(struct ethhdr), FLOW_FROM_TUNNEL_LOCAL, &relay);
	if (reason == FLOW_RELAY)
		reason = DROP_NO_ROUTE; /* cannot happen: local backends only */
	if (reason >= 0)
		goto drop;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *inner = (void *)(eth + 1);
	reason = DROP_MALFORMED;
	if ((void *)(inner + 1) > data_end)
		goto drop;
	struct iface *dst = 0;
	reason = label_to_pod(lt, inner, data_end, &dst);
	if (reason >= 0) {
		if (dst) /* TTL: counted on the pod it was for (forwarder.c) */
			count_drop_to(dst->slot);
		goto drop;
	}
	set_macs(eth, dst->peer_mac, dst->mac); /* counted once delivered (policy_deliver) */
	return policy_reject_tunnel(skb, policy_deliver(skb, dst->ifindex, dst->flags, 1)); /* policy.h, then deliver */

drop:
	count_drop(vrf, reason);
	return TC_ACT_SHOT;
}

#endif
