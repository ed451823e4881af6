/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Policy on packets that enter through a floating IP (nat_reply.h
 * translates them to the pod): the VRF's tunnel ingress and the pod's
 * ingress judge the translated packet, so a rule sees the pod's own
 * address (as a Kubernetes NetworkPolicy sees a pod's, whatever address a
 * client used to reach it), and the pod's replies, which pass its egress
 * as replies, leave through the floating IP as before. nat_underlay
 * returns NAT_POLICY_DELIVER(slot) instead of delivering, and
 * underlay_ingress calls policy_floating_deliver: the check runs from the
 * program's own frame, not below nat_underlay's (the combined stack of
 * the call chain would pass the verifier's 512 bytes). A REJECT there is
 * a drop: its answer would need the reverse translation. Replies of
 * source-NATed flows take the same way in a VRF with policy: they find
 * their flow's entry (the pod's egress decided it) and pass as its
 * replies, or are dropped once a change denies the flow.
 */
#ifndef ISTHMUS_POLICY_FLOATING_H
#define ISTHMUS_POLICY_FLOATING_H

/* NAT_POLICY_DELIVER is what nat_underlay returns for a packet it
 * translated to the pod interface in slot: below TC_ACT_UNSPEC, so no tc
 * action and not "not ours". */
#define NAT_POLICY_DELIVER(slot) (-2 - (int)(slot))

/* policy_floating_deliver delivers the packet nat_underlay translated
 * (nact = NAT_POLICY_DELIVER(slot)) once policy lets it. */
static __always_inline int policy_floating_deliver(struct __sk_buff *skb, int nact)
{
	__u32 slot = -2 - nact;
	struct iface *dst = bpf_map_lookup_elem(&iface_slots, &slot);
	if (!dst || !dst->ifindex) {
		count_drop(0, DROP_ERROR);
		return TC_ACT_SHOT;
	}
	return policy_deliver(skb, dst->ifindex, dst->flags, 0);
}

#endif
