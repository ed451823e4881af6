/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The way TCP flows were opened, for flows no attachment concerns yet.
 *
 * In a VRF with policy, a flow between pods no attachment concerns gets
 * no flow entry (pol_relevant): its packets pay nothing. When a change
 * then concerns it (a policy newly applied to a running server), the
 * first packet policy sees would be taken for the flow's first packet
 * and decide the flow in its own direction: a server's packet would make
 * the server the client, and the real client, now denied, would pass as
 * its replies. So the SYN (without ACK) of such a flow records which way
 * the flow was opened in pol_ways, under the flow's canonical key, and a
 * TCP packet that is not a SYN and finds no flow entry asks pol_ways
 * which way its flow goes, so the flow is decided on the way it was
 * opened whichever end sends first after the change.
 *
 * pol_ways is not the flow table: records are never refreshed (no later
 * packet of an unconcerned flow reads them), so they must not push live
 * flows or service translations out of the shared table, and an insert
 * into a large hash table (about 160 ns here) would be most of what it
 * costs. It is a direct-mapped array, as the verdict cache, but global:
 * the slot of the flow's canonical key holds the key of the flow's first
 * packet, so writing a record is one store, and a packet goes against
 * its flow's way when the slot holds its own key reversed. A later SYN
 * whose flow takes the same slot replaces the record (POL_WAYS slots:
 * a record lasts for about that many later TCP connections of the
 * node); a record that outlived its connection is harmless, since every
 * TCP connection starts with a SYN, which rewrites its slot or makes the
 * flow entry that is asked first; a record two
 * CPUs tore writing at once matches neither way and says nothing. The
 * cost is the store on every SYN of an unconcerned pair in a VRF with
 * policy, and one array read for a TCP packet that is not a SYN and has
 * no flow entry (none on the usual paths). Not pinned: a new program
 * starts without records (flows opened before are decided as before,
 * on their first packet seen).
 */
#ifndef ISTHMUS_POLICY_WAY_H
#define ISTHMUS_POLICY_WAY_H

#define POL_WAYS (1 << 18) /* slots, 16 bytes each */

/* pol_way: the flow key of a TCP flow's SYN, as in pol_cache_entry. */
struct pol_way {
	__u32 saddr;
	__u32 daddr;
	__u32 ports;     /* sport | dport << 16, as in flow_key */
	__u32 vrf_proto; /* vrf << 8 | proto */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POL_WAYS);
	__type(key, __u32);
	__type(value, struct pol_way);
} pol_ways SEC(".maps");

/* pol_way_slot is the slot of canonical flow key c. */
static __always_inline __u32 pol_way_slot(const struct flow_key *c)
{
	return pol_slot(c->saddr, c->daddr, c->sport | (__u32)c->dport << 16, c->vrf << 8 | c->proto, POL_WAYS);
}

/* pol_note_way records the way of TCP flow x->k, whose SYN without ACK
 * this packet is. */
static __always_inline void pol_note_way(struct pol_work *x)
{
	struct flow_key *k = &x->k;
	x->rk = *k;
	pol_canon(&x->rk);
	__u32 slot = pol_way_slot(&x->rk);
	struct pol_way *w = bpf_map_lookup_elem(&pol_ways, &slot);
	if (!w)
		return;
	w->saddr = k->saddr;
	w->daddr = k->daddr;
	w->ports = k->sport | (__u32)k->dport << 16;
	w->vrf_proto = k->vrf << 8 | k->proto;
}

/* pol_way_reply says whether the packet of flow key x->k (x->rk its
 * canonical key) goes against the way its flow was opened: 1 when its
 * slot holds its key reversed, else 0 (it goes that way, or no record
 * says). */
static __always_inline int pol_way_reply(struct pol_work *x)
{
	struct flow_key *k = &x->k;
	__u32 slot = pol_way_slot(&x->rk);
	struct pol_way *w = bpf_map_lookup_elem(&pol_ways, &slot);
	return w && w->saddr == k->daddr && w->daddr == k->saddr &&
	       w->ports == (k->dport | (__u32)k->sport << 16) && w->vrf_proto == (k->vrf << 8 | k->proto);
}

#endif
