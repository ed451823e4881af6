/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-packet half of ACL policy (policy.h has the model, the maps and
 * the classification): the tuple of a packet, the verdict cache, the flow
 * entries, reject, and the checks the programs call (policy_check,
 * policy_deliver). Included at the end of policy.h.
 */
#ifndef ISTHMUS_POLICY_FLOW_H
#define ISTHMUS_POLICY_FLOW_H

#include "policy_way.h"
#include "policy_frag.h"

/* pol_cache_entry: a per-CPU, direct-mapped cache of flow verdicts in
 * front of the flow table (as route_cache is in front of the routes): a
 * hit is an inlined array access instead of a hash lookup. An entry is
 * valid while gen equals the policy generation (pol_vrfs[vrf].gen, as
 * pol_gen[0]) and it was filled less than
 * POL_CACHE_TOUCH jiffies ago, so the flow entry's seen time is still
 * stamped at least every 250 ms (the agent's timeouts are seconds);
 * packets with SYN, FIN or RST always go to the flow table (its TCP
 * state). 32 bytes, two to a cache line. */
struct pol_cache_entry {
	__u32 saddr;   /* the flow key's */
	__u32 daddr;
	__u32 ports;   /* sport, dport as in flow_key */
	__u32 vrf_proto; /* vrf << 8 | proto */
	__u32 gen;
	__u32 entries; /* as flow.service of a policy entry */
	__u32 filled;  /* bpf_jiffies64(), low 32 bits */
	__u8 verdict;
	__u8 reject;
	__u16 pad;
};

#define POL_CACHE 4096
#define POL_CACHE_TOUCH 25 /* jiffies: at most 250 ms (HZ >= 100) */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, POL_CACHE);
	__type(key, __u32);
	__type(value, struct pol_cache_entry);
} pol_cache SEC(".maps");

static __always_inline __u16 pol_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline __u32 pol_sum(const void *p, __u32 words)
{
	const __u16 *w = p;
	__u32 sum = 0;
#pragma unroll
	for (__u32 i = 0; i < 14; i++)
		if (i < words)
			sum += w[i];
	return sum;
}

/* pol_reject turns the IPv4 packet at l3 (behind an Ethernet header at 0)
 * into the answer REJECT sends back to its sender: a TCP RST (kind
 * POL_REJECT_TCP or unset, for TCP) or an ICMP destination unreachable,
 * code 13, quoting the packet's header and first 8 bytes. MACs are
 * swapped. It returns 0, or -1 when nothing is to be sent (an ICMP error,
 * a RST, a fragment, IP options, a GSO packet). */
static __noinline int pol_reject(struct __sk_buff *skb, struct pol_work *x, __u32 l3, __u32 kind)
{
	struct pol_iphdr *ip = &x->ip;
	if (skb->gso_size || bpf_skb_load_bytes(skb, l3, ip, sizeof(*ip)) || ip->ihl_version != 0x45 ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return -1;
	/* A packet a service translated is answered as the client sent it:
	 * from the service's address and port, quoting them (policy_note
	 * noted them before the translation). */
	int translated = x->pp.noted && x->pp.daddr != ip->daddr;
	__builtin_memset(x->quote, 0, sizeof(x->quote));
	__u32 have = bpf_ntohs(ip->tot_len);
	if (have > skb->len - l3)
		have = skb->len - l3;
	if (have >= 28) {
		if (bpf_skb_load_bytes(skb, l3, x->quote, 28))
			return -1;
		if (translated && (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP))
			*(__u16 *)(x->quote + 22) = x->pp.dport;
	} else if (bpf_skb_load_bytes(skb, l3, x->quote, 20)) {
		return -1;
	}
	if (ip->protocol == IPPROTO_ICMP && (have < 21 || icmp_is_error(x->quote[20])))
		return -1;
	if (ip->protocol == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l3 + 20, &x->th, sizeof(x->th)))
			return -1;
		if (x->th.flags & 0x04)
			return -1; /* never answer a reset */
	}
	int tcp = ip->protocol == IPPROTO_TCP && kind != POL_REJECT_ICMP;
	if (bpf_skb_load_bytes(skb, 0, x->macs, 12))
		return -1;
	__u32 newlen = tcp ? 40 : 56;
	/* The kernel refuses change_tail on a packet still marked
	 * encapsulated (decapsulated MPLSoUDP); room after the IPv4 header
	 * does as well, since everything after it is rewritten. */
	if (bpf_skb_change_tail(skb, l3 + newlen, 0) &&
	    bpf_skb_adjust_room(skb, (__s32)(l3 + newlen) - (__s32)skb->len, BPF_ADJ_ROOM_NET, 0))
		return -1;
	struct pol_iphdr *rip = &x->rip;
	__builtin_memset(rip, 0, sizeof(*rip));
	rip->ihl_version = 0x45;
	rip->tot_len = bpf_htons(newlen);
	rip->ttl = 64;
	rip->protocol = tcp ? IPPROTO_TCP : IPPROTO_ICMP;
	rip->saddr = ip->daddr;
	rip->daddr = ip->saddr;
	if (translated) { /* the quote's port was set where it was read */
		rip->saddr = x->pp.daddr;
		*(__u32 *)(x->quote + 16) = x->pp.daddr;
		*(__u16 *)(x->quote + 10) = 0;
		*(__u16 *)(x->quote + 10) = pol_fold(pol_sum(x->quote, 10));
	}
	rip->check = pol_fold(pol_sum(rip, 10));
	__builtin_memcpy(x->rmacs, x->macs + 6, 6);
	__builtin_memcpy(x->rmacs + 6, x->macs, 6);
	if (bpf_skb_store_bytes(skb, 0, x->rmacs, 12, 0) ||
	    bpf_skb_store_bytes(skb, l3, rip, sizeof(*rip), 0))
		return -1;
	if (tcp) {
		struct pol_tcphdr *rt = &x->rt;
		__builtin_memset(rt, 0, sizeof(*rt));
		rt->source = translated ? x->pp.dport : x->th.dest;
		rt->dest = x->th.source;
		rt->doff = 5 << 4;
		if (x->th.flags & 0x10) { /* ACK: the reset takes its number */
			rt->seq = x->th.ack_seq;
			rt->flags = 0x04;
		} else {
			__u32 len = bpf_ntohs(ip->tot_len) - 20 - ((x->th.doff >> 4) & 0xf) * 4;
			len += (x->th.flags & 0x02) ? 1 : 0;
			len += (x->th.flags & 0x01) ? 1 : 0;
			rt->ack_seq = bpf_htonl(bpf_ntohl(x->th.seq) + len);
			rt->flags = 0x14;
		}
		__u32 sum = pol_sum(rt, 10);
		sum += (rip->saddr & 0xffff) + (rip->saddr >> 16) + (rip->daddr & 0xffff) + (rip->daddr >> 16);
		sum += bpf_htons(IPPROTO_TCP) + bpf_htons(20);
		rt->check = pol_fold(sum);
		return bpf_skb_store_bytes(skb, l3 + 20, rt, sizeof(*rt), 0) ? -1 : 0;
	}
	struct icmp_hdr *ic = &x->ic;
	ic->type = 3;
	ic->code = 13;
	ic->checksum = 0;
	ic->rest = 0;
	ic->checksum = pol_fold(pol_sum(ic, 4) + pol_sum(x->quote, 14));
	if (bpf_skb_store_bytes(skb, l3 + 20, ic, sizeof(*ic), 0) ||
	    bpf_skb_store_bytes(skb, l3 + 28, x->quote, 28, 0))
		return -1;
	return 0;
}

/* pol_l4_load reads the first bytes of the L4 header at off (ports, or
 * ICMP type, code and identifier) into x->quote when they are not in the
 * packet's linear data: 0, or -1 when the packet is too short. */
static __always_inline int pol_l4_load(struct __sk_buff *skb, struct pol_work *x, __u32 off, __u8 proto)
{
	if (proto == IPPROTO_TCP)
		return bpf_skb_load_bytes(skb, off, x->quote, 14) ? -1 : 0;
	if (proto == IPPROTO_UDP)
		return bpf_skb_load_bytes(skb, off, x->quote, 4) ? -1 : 0;
	return bpf_skb_load_bytes(skb, off, x->quote, 8) ? -1 : 0;
}

/* pol_tuple_of reads into x->t and x->k the tuple of the packet at l3
 * (direct packet access, a helper call only when the L4 header is not in
 * the linear data), and its TCP flags into x->bits: the source is what
 * policy_pre noted (noted), else the packet's own. A packet that is not a
 * fragment after the first is classified on its ports (ICMP: type and
 * code); one whose L4 header cannot be read (a TCP, UDP or ICMP packet
 * too short for it, a header length under 20) is malformed (x->malformed:
 * the caller drops it), so that it never passes a rule on ports it does
 * not carry. A fragment after the first has no L4 header: it takes the
 * ports its first fragment left (policy_frag.h), else it is classified
 * without ports. It returns -1 when the IPv4 header itself
 * cannot be read. Not inlined: policy_check's frame is on the stack of
 * every program that calls it. */
static __noinline int pol_tuple_of(struct __sk_buff *skb, struct pol_work *x, __u32 l3, int noted)
{
	x->malformed = 1;
	if (l3 > 128)
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pol_iphdr *ip = data + l3;
	if ((void *)(ip + 1) > data_end)
		return -1;
	__u32 ihl = (ip->ihl_version & 0xf) * 4;
	__u8 *l4 = (void *)ip + ihl;
	struct pol_tuple *t = &x->t;
	struct flow_key *k = &x->k;
	__builtin_memset(k, 0, sizeof(*k));
	k->vrf = x->vrf;
	t->saddr = noted ? x->pp.saddr : ip->saddr;
	t->daddr = ip->daddr;
	t->proto = ip->protocol;
	t->sport = 0;
	t->dport = 0;
	x->bits = 0;
	x->malformed = 0;
	x->opening = 0;
	__u8 proto = ip->protocol;
	if (!(ip->frag_off & bpf_htons(0x1fff)) &&
	    (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP)) {
		/* The first bytes of the L4 header, as scalars: w0 the ports
		 * (ICMP: type, code, checksum), w1 ICMP's identifier and
		 * sequence, fl the TCP flags. */
		__u32 w0, w1 = 0;
		__u8 fl = 0;
		if (ihl < 20) {
			x->malformed = 1;
			goto done;
		}
		if ((void *)(l4 + 14) <= data_end) {
			w0 = *(__u32 *)l4;
			w1 = *(__u32 *)(l4 + 4);
			fl = l4[13];
		} else if (!pol_l4_load(skb, x, l3 + ihl, proto)) {
			w0 = *(__u32 *)x->quote;
			w1 = *(__u32 *)(x->quote + 4);
			fl = x->quote[13];
		} else {
			x->malformed = 1;
			goto done;
		}
		if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
			if (proto == IPPROTO_TCP) {
				x->bits = tcp_bits(fl);
				x->opening = (fl & 0x12) == 0x02; /* SYN without ACK */
			}
			__u16 sport = w0 & 0xffff, dport = w0 >> 16;
			k->sport = noted ? x->pp.sport : sport;
			k->dport = dport;
			t->sport = bpf_ntohs(k->sport);
			t->dport = bpf_ntohs(dport);
		} else {
			__u8 type = w0 & 0xff;
			t->dport = (__u16)type << 8 | ((w0 >> 8) & 0xff);
			/* Echo: the request's identifier is its source port, the
			 * reply's its destination, so a reply is the reverse. */
			__u16 id = w1 & 0xffff;
			if (type == 8)
				k->sport = id;
			else if (type == 0)
				k->dport = id;
		}
	}
done:
	/* A fragment: a first one leaves its ports for the later ones, which
	 * take them (policy_frag.h). */
	if ((ip->frag_off & bpf_htons(0x3fff)) && !x->malformed)
		pol_frag_ports(x, ip->id, !(ip->frag_off & bpf_htons(0x1fff)));
	k->saddr = t->saddr;
	k->daddr = t->daddr;
	k->proto = t->proto;
	k->pad[0] = FLOW_SPACE_POLICY;
	return 0;
}

/* pol_related says whether the ICMP error at l3 (destination
 * unreachable, source quench, time exceeded, parameter problem) concerns
 * a flow policy allowed: the flow of the packet it quotes has an entry of
 * the current generation whose verdict is ALLOW, and the error goes to
 * that packet's source. Such an
 * error passes as related to the flow, as in a connection tracker (PMTU
 * discovery needs it). A global function: the verifier checks it once. */
__noinline int pol_related(struct __sk_buff *skb, struct pol_work *x, __u32 l3)
{
	if (!x || l3 > 128)
		return 0;
	struct pol_iphdr *ip = &x->ip, *in = &x->rip;
	if (bpf_skb_load_bytes(skb, l3, ip, sizeof(*ip)))
		return 0;
	__u32 q = l3 + (ip->ihl_version & 0xf) * 4 + sizeof(struct icmp_hdr);
	if (bpf_skb_load_bytes(skb, q, in, sizeof(*in)))
		return 0;
	__u32 ihl = (in->ihl_version & 0xf) * 4;
	if ((in->ihl_version >> 4) != 4 || ihl < 20 || in->saddr != ip->daddr || (in->frag_off & bpf_htons(0x1fff)))
		return 0;
	if (bpf_skb_load_bytes(skb, q + ihl, x->quote, 8))
		return 0;
	__u16 sport = *(__u16 *)x->quote, dport = *(__u16 *)(x->quote + 2);
	if (in->protocol == IPPROTO_ICMP) {
		/* An echo: its identifier is a port, as in pol_tuple_of. */
		__u8 type = x->quote[0];
		__u16 id = *(__u16 *)(x->quote + 4);
		if (type != 8 && type != 0)
			return 0;
		sport = type == 8 ? id : 0;
		dport = type == 0 ? id : 0;
	} else if (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) {
		return 0;
	}
	struct flow_key *rk = &x->rk;
	__builtin_memset(rk, 0, sizeof(*rk));
	rk->vrf = x->vrf;
	rk->saddr = in->daddr;
	rk->daddr = in->saddr;
	rk->sport = dport;
	rk->dport = sport;
	rk->proto = in->protocol;
	rk->pad[0] = FLOW_SPACE_POLICY;
	pol_canon(rk); /* either direction: the flow's one entry */
	struct flow *f = bpf_map_lookup_elem(&flows, rk);
	return f && f->nat_addr == x->gen && f->verdict == VERDICT_ALLOW;
}

/* pol_malformed drops a packet policy cannot classify (pol_tuple_of),
 * counted as malformed in vrf and on the pod interface: in-drops of the
 * pod in slot src that sent it, else out-drops of the pod in slot dst it
 * was for (POL_NONE: none). Its verdict in x is DENY: the verdict of an
 * earlier packet left there would have policy_reject_tunnel answer it. */
static __always_inline int pol_malformed(struct pol_work *x, __u32 vrf, __u32 src, __u32 dst)
{
	x->dc.verdict = VERDICT_DENY;
	if (vrf >= MAX_VRFS)
		vrf = 0;
	struct drops *d = bpf_map_lookup_elem(&vrf_drops, &vrf);
	if (d)
		d->reason[DROP_MALFORMED]++;
	__u32 slot = src != POL_NONE ? src : dst;
	struct iface_stats *st = bpf_map_lookup_elem(&iface_counters, &slot);
	if (st) {
		if (src != POL_NONE)
			st->rx_drops++;
		else
			st->tx_drops++;
	}
	return TC_ACT_SHOT;
}

/* pol_dir_bits is what a packet with TCP flags bits records on its
 * flow's entry: the bits as they are for the way of the flow's first
 * packet, shifted by POL_REPLY_SHIFT for the reply (flow_touch adds
 * FLOW_F_SEEN of the first way, which such an entry always has). */
static __always_inline __u32 pol_dir_bits(__u32 bits, int reply)
{
	return reply ? (bits | FLOW_F_SEEN) << POL_REPLY_SHIFT : bits;
}

/* pol_create creates the one entry of flow x->k under its canonical key
 * x->rk with decision x->dc (the decision of the flow's first way):
 * swapped says the first way is the reverse of x->rk, reply that this
 * packet goes the other way. */
static __always_inline void pol_create(struct pol_work *x, __u32 gen, __u32 bits, int swapped, int reply)
{
	struct pol_decision *dc = &x->dc;
	/* CLOCK_MONOTONIC at tick resolution, as the agent's timeouts need:
	 * cheaper than bpf_ktime_get_ns in a virtual machine. */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct flow *nf = &x->nf;
	__builtin_memset(nf, 0, sizeof(*nf));
	nf->seen = now;
	nf->created = now;
	nf->reverse = x->rk; /* the entry is its own other direction */
	nf->flags = FLOW_F_BOTH | (swapped ? FLOW_F_SWAPPED : 0) | FLOW_F_SEEN | pol_dir_bits(bits, reply);
	pol_store(nf, dc, dc->verdict, dc->reject, gen);
	if (bpf_map_update_elem(&flows, &x->rk, nf, BPF_ANY)) {
		flow_count(FLOW_TABLE_FULL);
		return;
	}
	flow_count(FLOW_CREATED);
}

/* pol_finish counts the packet of a decided flow and says what becomes of
 * it: POLICY_PASS, or the tc action to return. */
static __always_inline int pol_finish(struct __sk_buff *skb, struct pol_work *x, __u32 l3)
{
	struct pol_decision *dc = &x->dc;
	__u64 bytes = skb->len;
	if (dc->verdict == VERDICT_ALLOW) {
		pol_count_entry(dc->entry[0], bytes);
		pol_count_entry(dc->entry[1], bytes);
		return POLICY_PASS;
	}
	pol_count_denied(x->vrf, dc->entry[0], dc->entry[1], bytes);
	if (dc->verdict == VERDICT_REJECT && !x->from_tunnel && l3 == sizeof(struct ethhdr) &&
	    !pol_reject(skb, x, l3, dc->reject))
		return bpf_redirect(skb->ifindex, 0);
	return TC_ACT_SHOT;
}

/* pol_fast is the path of an established flow: the packet at l3's flow key
 * read into registers (as pol_tuple_of would make it), looked up in this
 * CPU's verdict cache, and an allowed packet counted, without writing the
 * per-CPU work area. It returns POLICY_PASS for an allowed flow, 0 for a
 * denied one (x->dc holds its decision) and 1 when the cache cannot say
 * (a miss, a stale or old entry, TCP SYN, FIN or RST, an ICMP error, a
 * fragment, a packet too short to read: the flow table decides). bpf_jiffies64 is inlined by the
 * verifier (a load). */
static __noinline int pol_fast(struct __sk_buff *skb, struct pol_work *x, __u32 vrf, __u32 l3, __u32 noted)
{
	/* The generation in the VRF's line, which policy_active read. */
	struct pol_vrf *pv = bpf_map_lookup_elem(&pol_vrfs, &vrf);
	__u32 gen = pv ? pv->gen : 0;
	x->gen = gen;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (l3 > 128)
		return 1;
	struct pol_iphdr *ip = data + l3;
	if ((void *)(ip + 1) > data_end)
		return 1;
	__u8 *l4 = (void *)ip + (ip->ihl_version & 0xf) * 4;
	__u8 proto = ip->protocol;
	__u32 ports = 0;
	if (ip->frag_off & bpf_htons(0x3fff))
		return 1; /* a fragment: its ports may be a first fragment's (pol_tuple_of) */
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if ((void *)(l4 + 4) > data_end)
			return 1;
		ports = *(__u32 *)l4;
		if (proto == IPPROTO_TCP && ((void *)(l4 + 14) > data_end || (l4[13] & 0x07)))
			return 1;
		if (noted)
			ports = (ports & 0xffff0000) | x->pp.sport;
	} else if (proto == IPPROTO_ICMP) {
		if ((void *)(l4 + 8) > data_end || icmp_is_error(l4[0]))
			return 1; /* an error may be related to a flow (pol_related) */
		__u32 id = *(__u16 *)(l4 + 4);
		ports = l4[0] == 8 ? id : l4[0] == 0 ? id << 16 : 0;
	}
	__u32 saddr = noted ? x->pp.saddr : ip->saddr;
	__u32 daddr = ip->daddr;
	__u32 vp = vrf << 8 | proto;
	__u32 h = pol_slot(saddr, daddr, ports, vp, POL_CACHE);
	__u32 now = bpf_jiffies64();
	struct pol_cache_entry *c = bpf_map_lookup_elem(&pol_cache, &h);
	if (!c || c->gen != gen || c->saddr != saddr || c->daddr != daddr || c->ports != ports ||
	    c->vrf_proto != vp || now - c->filled >= POL_CACHE_TOUCH)
		return 1;
	__u32 entries = c->entries;
	if (c->verdict != VERDICT_ALLOW) {
		x->dc.verdict = c->verdict;
		x->dc.reject = c->reject;
		x->dc.entry[0] = entries & 0xffff;
		x->dc.entry[1] = entries >> 16;
		return 0;
	}
	__u64 bytes = skb->len;
	pol_count_entry(entries & 0xffff, bytes);
	pol_count_entry(entries >> 16, bytes);
	return POLICY_PASS;
}

/* pol_cache_fill stores the decision x->dc on flow x->k in its slot of
 * this CPU's verdict cache (what pol_fast reads). */
static __noinline int pol_cache_fill(struct pol_work *x)
{
	struct flow_key *k = &x->k;
	__u32 h = pol_slot(k->saddr, k->daddr, k->sport | (__u32)k->dport << 16, k->vrf << 8 | k->proto, POL_CACHE);
	struct pol_cache_entry *c = bpf_map_lookup_elem(&pol_cache, &h);
	if (!c)
		return 0;
	c->saddr = k->saddr;
	c->daddr = k->daddr;
	c->ports = k->sport | (__u32)k->dport << 16;
	c->vrf_proto = k->vrf << 8 | k->proto;
	c->gen = x->gen;
	c->verdict = x->dc.verdict;
	c->reject = x->dc.reject;
	c->entries = (x->dc.entry[0] & 0xffff) | x->dc.entry[1] << 16;
	c->filled = bpf_jiffies64();
	return 0;
}

/* policy_check enforces policy on the packet policy_pre noted once its
 * destination is known: dst is the slot of the local pod it goes to (or
 * POL_NONE toward the tunnel); the source is what policy_pre noted, and
 * the pod it comes from the interface it came in by (none from_tunnel). It returns POLICY_PASS, or the tc action to
 * return (the packet was dropped and counted, or turned into a reject sent
 * back out of the interface it came in by). */
__noinline int policy_check(struct __sk_buff *skb, __u32 vrf, __u32 l3, __u32 dst, __u32 from_tunnel)
{
	struct pol_work *x = pol_work();
	if (!x)
		return POLICY_PASS;
	int noted = x->pp.on && x->pp.vrf == vrf; /* else nothing translated the packet */
	x->pp.on = 0;
	x->pp.noted = noted; /* for pol_reject */
	x->vrf = vrf;
	x->from_tunnel = from_tunnel;
	/* An established flow: this CPU's cache. Its entries are valid for
	 * one generation, which every change of an attachment point bumps, so
	 * a hit needs neither the interface nor the attachments. */
	int fast = pol_fast(skb, x, vrf, l3, noted);
	if (fast == POLICY_PASS)
		return POLICY_PASS;
	if (fast == 0)
		return pol_finish(skb, x, l3);
	if (pol_tuple_of(skb, x, l3, noted))
		return pol_malformed(x, vrf, POL_NONE, POL_NONE); /* the programs read the IPv4 header before */
	__u32 src = POL_NONE;
	if (!from_tunnel) {
		__u32 in = skb->ifindex;
		struct iface *ifc = iface_at(in);
		if (!ifc || ifc->ifindex != in)
			return POLICY_PASS;
		src = ifc->slot;
	}
	if (!pol_relevant(vrf, src, dst)) {
		if (x->opening)
			pol_note_way(x); /* policy_way.h */
		return POLICY_PASS;
	}
	if (x->malformed)
		return pol_malformed(x, vrf, src, dst);
	/* An ICMP error about an allowed flow passes as related to it. */
	if (x->t.proto == IPPROTO_ICMP && icmp_is_error(x->t.dport >> 8) && pol_related(skb, x, l3))
		return POLICY_PASS;
	x->src = src;
	x->dst = dst;
	struct pol_decision *dc = &x->dc;
	/* One entry for both ways, under the canonical key: one lookup finds
	 * it from either side. */
	x->rk = x->k;
	int swapped = pol_canon(&x->rk);
	struct flow *f = bpf_map_lookup_elem(&flows, &x->rk);
	int reply = 0;
	if (f && (f->flags & FLOW_F_BOTH)) {
		/* This packet goes the first packet's way when it and the first
		 * packet both went along the key or both against it. */
		reply = !(f->flags & FLOW_F_SWAPPED) != !swapped;
		if (f->nat_addr == x->gen) {
			pol_load(f, dc);
			flow_touch(f, pol_dir_bits(x->bits, reply));
			goto decided;
		}
	} else if (f) {
		/* An entry of the two-entry layout, written before an upgrade:
		 * the flow's first way is that of the entry without
		 * FLOW_F_REPLY. The flow is decided again and gets its one
		 * entry in place of this one (the other is collected). */
		reply = !(f->flags & FLOW_F_REPLY) != !swapped;
		f = 0;
	} else if (x->t.proto == IPPROTO_TCP && !x->opening) {
		/* No entry, and not the flow's first packet: the way it was
		 * opened, if it was opened while nothing concerned it. */
		reply = pol_way_reply(x);
	}
	dc->vrf = x->vrf;
	if (reply) {
		/* A stale reply: decide its forward direction again. */
		x->ft = x->t;
		x->t.saddr = x->ft.daddr;
		x->t.daddr = x->ft.saddr;
		x->t.sport = x->ft.dport;
		x->t.dport = x->ft.sport;
		if (x->t.proto == IPPROTO_ICMP) {
			x->t.sport = 0;
			x->t.dport = 8 << 8;
		}
		dc->src = x->dst;
		dc->dst = x->src;
		dc->tunnel = x->from_tunnel ? 0 : x->dst == POL_NONE;
	} else {
		dc->src = x->src;
		dc->dst = x->dst;
		dc->tunnel = x->from_tunnel;
	}
	pol_decide(x);
	if (f) {
		pol_store(f, dc, dc->verdict, dc->reject, x->gen);
		flow_touch(f, pol_dir_bits(x->bits, reply));
	} else {
		/* A new flow is created without a second lookup (BPF_ANY
		 * overwrites what another CPU may have created meanwhile). */
		pol_create(x, x->gen, x->bits, swapped ^ reply, reply);
	}
decided:
	if (reply && dc->verdict != VERDICT_ALLOW)
		dc->verdict = VERDICT_DENY; /* replies are never answered */
	pol_cache_fill(x);
	return pol_finish(skb, x, l3);
}

/* policy_deliver delivers a packet that underlay_xdp decapsulated
 * (MPLSoMPLS) to the pod interface ifindex, as forwarder.c's deliver
 * does, once the VRF's tunnel ingress and the pod's ingress let it (noted:
 * policy_pre ran on the packet before a translation), and counts it sent
 * to the pod (its callers do not: a refused packet is a drop). A global
 * function, so that the caller keeps nothing across it. */
__noinline int policy_deliver(struct __sk_buff *skb, __u32 ifindex, __u32 flags, __u32 noted)
{
	struct iface *ifc = ifindex < DIRECT_IFINDEX ? bpf_map_lookup_elem(&iface_index, &ifindex)
						     : bpf_map_lookup_elem(&ifaces, &ifindex);
	__u32 slot = MAX_IFACES; /* no interface: nothing to count */
	if (ifc && ifc->ifindex == ifindex) {
		slot = ifc->slot;
		if (policy_active(ifc->vrf)) {
			if (!noted)
				policy_reset();
			int pact = policy_check(skb, ifc->vrf, sizeof(struct ethhdr), slot, 1);
			if (pact != POLICY_PASS)
				return pact;
		}
	}
	struct iface_stats *st = bpf_map_lookup_elem(&iface_counters, &slot);
	if (st) {
		st->tx_packets++;
		st->tx_bytes += skb->len;
	}
	if (flags & IFACE_PEER)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

#endif
