/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ports of fragmented datagrams, for policy.
 *
 * Only the first fragment of an IPv4 datagram carries the L4 header, so
 * the fragments after it have no ports: judged on their own they are no
 * packet of their flow (a flow entry is keyed by ports) and would be
 * classified as a new flow without ports, in their own direction (the
 * fragments of an allowed flow's large replies dropped at an isolated
 * client, those of a datagram to an allowed port dropped by the rule
 * that allows it). So the first fragment's ports are remembered under
 * (VRF, source, destination, protocol, IP identification), and a later
 * fragment of the same datagram takes them: it is decided as a packet of
 * the first fragment's flow, replies included.
 *
 * pol_frags is a direct-mapped array (as pol_ways), global since the
 * fragments of one datagram may reach different CPUs: a first fragment
 * writes its slot; a first fragment of another datagram that takes the
 * slot replaces it, which the fragments of one datagram, sent together,
 * rarely meet. A later fragment whose first was not seen (reordered, or
 * its slot taken) is judged without ports, as before. Fragments never
 * take the verdict cache (their ports are not in the packet).
 */
#ifndef ISTHMUS_POLICY_FRAG_H
#define ISTHMUS_POLICY_FRAG_H

#define POL_FRAGS 4096 /* slots, 24 bytes each */

/* pol_frag: a first fragment's datagram and its ports. */
struct pol_frag {
	__u32 saddr;
	__u32 daddr;
	__u32 vrf_proto; /* vrf << 8 | proto */
	__u32 id;        /* the IP identification */
	__u16 ksport;    /* the flow key's ports (flow_key) */
	__u16 kdport;
	__u16 tsport;    /* the classified ports (pol_tuple) */
	__u16 tdport;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POL_FRAGS);
	__type(key, __u32);
	__type(value, struct pol_frag);
} pol_frags SEC(".maps");

/* pol_frag_ports remembers the ports of x's tuple for the datagram of IP
 * identification id when first (a first fragment), else gives x's tuple
 * the ports a first fragment of the datagram left, if any. */
static __always_inline void pol_frag_ports(struct pol_work *x, __u16 id, int first)
{
	struct pol_tuple *t = &x->t;
	struct flow_key *k = &x->k;
	__u32 vp = x->vrf << 8 | t->proto;
	__u32 slot = pol_slot(t->saddr, t->daddr, id, vp, POL_FRAGS);
	struct pol_frag *f = bpf_map_lookup_elem(&pol_frags, &slot);
	if (!f)
		return;
	if (first) {
		f->saddr = t->saddr;
		f->daddr = t->daddr;
		f->vrf_proto = vp;
		f->id = id;
		f->ksport = k->sport;
		f->kdport = k->dport;
		f->tsport = t->sport;
		f->tdport = t->dport;
		return;
	}
	if (f->saddr != t->saddr || f->daddr != t->daddr || f->vrf_proto != vp || f->id != id)
		return;
	k->sport = f->ksport;
	k->dport = f->kdport;
	t->sport = f->tsport;
	t->dport = f->tdport;
}

#endif
