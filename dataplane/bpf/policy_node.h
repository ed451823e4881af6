/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A pod's own node always reaches it, whatever its policy (Kubernetes
 * NetworkPolicy: the kubelet's probes).
 *
 * The node's connection to a pod leaves the node's stack through the host
 * end of the pod's veth, where no program runs: it creates no flow entry,
 * so the pod's answers would be judged by the pod's egress policy as first
 * packets. policy_to_node lets them through: a pod's packet without a VRF
 * route that host access hands to the node's own stack (its VRF has host
 * access and the host's FIB calls the destination local, the test
 * nat_no_route delivers by) passes egress policy, and is counted on the
 * pod interface in pol_node_passed. Nothing else is opened: a destination
 * the FIB forwards (another node, the data center) or that a VRF route or
 * an external VRF of a floating IP carries is decided by policy as
 * before, and ingress policy is not concerned.
 *
 * Included by forwarder.c after nat.h, whose maps it reads.
 */
#ifndef ISTHMUS_POLICY_NODE_H
#define ISTHMUS_POLICY_NODE_H

/* pol_node_passed: per-CPU packets of a pod interface (by slot) that went
 * to the node's own stack past the pod's egress policy. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_node_passed SEC(".maps");

/* policy_to_node says whether the packet (behind an Ethernet header) of
 * a pod, in vrf, a VRF without a route to its destination, goes to the
 * node's own stack, and counts it then. Only a pod with an egress
 * attachment asks the FIB. The pod's interface is found again here, so
 * that the caller keeps nothing across the call. */
static __noinline int policy_to_node(struct __sk_buff *skb, __u32 vrf)
{
	struct nat_vrf *cfg = bpf_map_lookup_elem(&nat_vrfs, &vrf);
	if (!cfg || !(cfg->flags & NAT_F_HOST))
		return 0;
	__u32 in = skb->ifindex;
	struct iface *ifc = iface_at(in);
	if (!ifc || ifc->ifindex != in)
		return 0;
	__u32 slot = ifc->slot;
	if (!pol_iface_attach(slot, 1))
		return 0;
	__u32 zero = 0;
	struct nat_scratch *s = bpf_map_lookup_elem(&nat_scratch, &zero);
	if (!s)
		return 0;
	/* The scratch of nat.h, which fills it anew before reading it: the
	 * program's stack has no room for a FIB lookup's arguments. */
	struct iphdr *ip = (void *)s->ip;
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), ip, sizeof(*ip)))
		return 0;
	__u32 src = cfg->addr;
	struct nat_global *g = bpf_map_lookup_elem(&nat_host, &zero);
	if (g && g->floating) {
		/* A floating IP advertised in an external VRF may carry the
		 * packet there instead (nat_floating_egress); one bound 1:1
		 * leaves from its address (nat_no_route). */
		struct host_key hk = {.vrf = vrf, .addr = ip->saddr};
		if (bpf_map_lookup_elem(&floating_vpn, &hk))
			return 0;
		__u32 *f = bpf_map_lookup_elem(&floating_out, &hk);
		if (f)
			src = *f;
	}
	struct bpf_fib_lookup *fib = (void *)s->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET_;
	fib->tos = ip->tos;
	fib->l4_protocol = ip->protocol;
	fib->ifindex = skb->ifindex;
	fib->ipv4_src = src;
	fib->ipv4_dst = ip->daddr;
	/* Only whether the FIB forwards matters: no neighbour lookup. */
	if (bpf_fib_lookup(skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_SKIP_NEIGH) != BPF_FIB_LKUP_RET_NOT_FWDED)
		return 0;
	__u64 *n = bpf_map_lookup_elem(&pol_node_passed, &slot);
	if (n)
		(*n)++;
	return 1;
}

#endif
