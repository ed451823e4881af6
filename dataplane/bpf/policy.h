/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Stateful ACL policy of the Isthmus forwarder.
 *
 * Attachment points: a pod interface's egress (packets the pod sends) and
 * ingress (packets delivered to it, also after decapsulation), and a VRF's
 * tunnel ingress. The loader compiles the ACL sets attached at each point
 * into an attachment (an id): its rules in evaluation order (rule n is bit
 * n) and three classifiers, LPM tries keyed by (attachment, prefix) whose
 * values say which rules match there: source address, destination
 * address, and (protocol, destination port or ICMP type), plus (protocol,
 * source port) when some rule matches source ports. A trie value is small
 * (struct pol_ref: the bitmap's summary, a bit per 64-rule word that is
 * not zero, and where its non-zero words are in pol_words, one array of
 * words for every bitmap), so the trie's nodes are small allocations a
 * lookup walks densely, and a bitmap takes room for its non-zero words
 * only. The first packet of a flow intersects the summaries, then the
 * words they have in common, lowest first, and takes the lowest rule: a
 * few LPM lookups and at most a few hundred word ANDs, whatever the
 * number of rules, instead of a scan.
 *
 * Verdicts live in the shared flow table (flow.h), in a key space of their
 * own (flow_key.pad[0] = FLOW_SPACE_POLICY), so they never collide with the
 * entries of service translation: the key is the flow between the real
 * endpoints (the source before any reverse translation, the destination
 * after any service translation). A flow is one entry, under the
 * canonical direction of its key (pol_canon: the lower address and port
 * first), which says which way the first packet went (FLOW_F_SWAPPED) and
 * keeps the TCP flags of each way (the reply's shifted by
 * POL_REPLY_SHIFT); every later packet either way is one lookup, and a
 * first packet writes one entry (a second insert into the large LRU table
 * was about 40% of a first packet's cost). Policy entries never translate (nat is
 * NAT_NONE), so they keep their own fields where translation's are:
 * nat_addr holds the policy generation the verdict was decided under,
 * nat_port the reject kind, service the two counter slots (pol_store).
 * An entry is valid while its generation equals pol_gen[0], which the
 * loader bumps after every policy change (and copies into the pol_vrfs
 * entry of every VRF with policy, where the checks read it, in the line
 * policy_active reads): a stale entry is evaluated again
 * on its next packet (a reply by evaluating its flow's first way), so a
 * newly denied flow stops at once. Entries of the earlier two-entry layout
 * (FLOW_F_BOTH unset) found after an upgrade are decided again and
 * replaced by one entry; the agent's collector removes their other half.
 */
#ifndef ISTHMUS_POLICY_H
#define ISTHMUS_POLICY_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "types.h"
#include "flow.h"

#define POL_WORDS 256                 /* bitmap words: rules per attachment / 64 */
#define POL_SUMMARY (POL_WORDS / 64)  /* summary words */
#define POL_MAX_RULES (POL_WORDS * 64) /* 16384 rules per attachment */
#define POL_MAX_ATTACH 16384
#define POL_MAX_PREFIXES (1 << 18)    /* classifier entries per dimension */
#define POL_MAX_ENTRIES 65536         /* ACL entries with counters */
#define POL_MAX_WORDS (1 << 21)       /* non-zero bitmap words of every classifier entry (16 MiB) */
#define POL_RULE_SLOTS (1 << 19)      /* rules of every attachment, spares included (4 MiB) */
#define POL_NONE 0xffffffff           /* no interface slot */
#define FLOW_SPACE_POLICY 1           /* flow_key.pad[0] of policy entries */
#define VERDICT_REJECT 2              /* flow.verdict: denied, and the sender is answered */
#define FLOW_F_BOTH 0x200    /* flow.flags: policy's one entry for both ways, under the canonical key */
#define FLOW_F_SWAPPED 0x400 /* with FLOW_F_BOTH: the flow's first packet went against the key */
#define POL_REPLY_SHIFT 4    /* with FLOW_F_BOTH: FLOW_F_SEEN..FLOW_F_RST of the reply way, shifted */

/* Actions (rules and defaults). */
enum pol_action {
	POL_ACCEPT = 1,
	POL_DROP = 2,
	POL_REJECT = 3,
};

/* How REJECT answers; 0: a TCP reset for TCP, else ICMP. */
enum pol_reject {
	POL_REJECT_TCP = 1,
	POL_REJECT_ICMP = 2,
};

/* Where a flow was denied (the first counter slot of a denied flow holds
 * kind << POINT_SHIFT | index). */
enum pol_point {
	POINT_EGRESS = 1,  /* index: interface slot */
	POINT_INGRESS = 2, /* index: interface slot */
	POINT_TUNNEL = 3,  /* index: VRF */
};
#define POINT_SHIFT 14 /* a point is kind << POINT_SHIFT | index (both fit 16 bits) */

/* pol_ref: the value of a classifier entry, a rule bitmap of POL_WORDS
 * words of which only the non-zero ones are stored, in order, in
 * pol_words: word k (bit k % 64 of summary[k / 64] set) is at
 * base[k / 64] plus the number of summary bits of summary[k / 64] below
 * it. */
struct pol_ref {
	__u64 summary[POL_SUMMARY]; /* bit i: word i is not zero */
	__u32 base[POL_SUMMARY];    /* pol_words index of the first stored word of each 64 */
};

/* pol_addr_key: LPM key; prefixlen counts the 32 bits of attach. */
struct pol_addr_key {
	__u32 prefixlen;
	__u32 attach; /* network byte order */
	__u32 addr;   /* network byte order */
};

/* pol_port_key: LPM key over (attach, proto, port); prefixlen counts the 32
 * bits of attach, then 8 of proto, then up to 16 of port. */
struct pol_port_key {
	__u32 prefixlen;
	__u32 attach; /* network byte order */
	__u8 proto;
	__u8 port[2]; /* network byte order; ICMP: type, code */
	__u8 pad;
};

/* pol_rule: rule n of an attachment is at its rules + n of pol_rules. */
struct pol_rule {
	__u32 entry; /* counter slot of the ACL entry */
	__u8 action; /* enum pol_action */
	__u8 reject; /* enum pol_reject */
	__u16 pad;
};

struct pol_attachment {
	__u32 nrules;
	__u8 default_action; /* enum pol_action */
	__u8 default_reject;
	__u8 has_sport;      /* some rule matches source ports */
	__u8 pad;
	__u32 rules;         /* pol_rules index of rule 0 */
};

/* pol_iface: attachments of a pod interface, by slot (0: none). */
struct pol_iface {
	__u32 ingress;
	__u32 egress;
};

/* pol_vrf: a VRF's tunnel-ingress attachment and whether any attachment
 * of the VRF exists (else its packets skip policy). */
struct pol_vrf {
	__u32 tunnel;
	__u32 active;
	__u32 gen; /* the policy generation (as pol_gen[0]) while active */
	__u32 pad;
};

struct pol_counter {
	__u64 packets;
	__u64 bytes;
};

struct pol_denied {
	__u64 ingress; /* interface: ingress; VRF: every point */
	__u64 egress;  /* interface: egress; VRF: tunnel ingress */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, POL_MAX_PREFIXES);
	__type(key, struct pol_addr_key);
	__type(value, struct pol_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, POL_MAX_PREFIXES);
	__type(key, struct pol_addr_key);
	__type(value, struct pol_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, POL_MAX_PREFIXES);
	__type(key, struct pol_port_key);
	__type(value, struct pol_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_dport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, POL_MAX_PREFIXES);
	__type(key, struct pol_port_key);
	__type(value, struct pol_ref);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_sport SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POL_MAX_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_words SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POL_RULE_SLOTS);
	__type(key, __u32);
	__type(value, struct pol_rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POL_MAX_ATTACH);
	__type(key, __u32);
	__type(value, struct pol_attachment);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_attach SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct pol_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VRFS);
	__type(key, __u32);
	__type(value, struct pol_vrf);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_vrfs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, POL_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct pol_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_entry_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct pol_denied);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_iface_denied SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VRFS);
	__type(key, __u32);
	__type(value, struct pol_denied);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pol_vrf_denied SEC(".maps");

/* pol_pkt: what the policy hooks carry from before the flow table's
 * translation to after the route lookup. */
struct pol_pkt {
	__u32 vrf;
	__u32 l3;     /* offset of the IPv4 header */
	__u32 saddr;  /* source before any translation of this packet */
	__u16 sport;
	__u8 on;      /* policy is active in the VRF */
	__u8 from_tunnel;
	__u32 daddr;  /* destination before any translation (a service's) */
	__u16 dport;
	__u8 noted;   /* policy_check: this packet's source and destination were noted */
	__u8 pad;
};

/* pol_tuple: what a flow is classified on. */
struct pol_tuple {
	__u32 saddr;
	__u32 daddr;
	__u16 sport; /* host byte order; 0 without ports */
	__u16 dport; /* host byte order; ICMP: type << 8 | code */
	__u8 proto;
};

/* pol_decision: the outcome of evaluating a flow. */
struct pol_decision {
	/* in */
	__u32 vrf;
	__u32 src;      /* slot of the source pod, POL_NONE when remote */
	__u32 dst;      /* slot of the destination pod, POL_NONE when remote */
	__u32 tunnel;   /* the flow arrived from the tunnel */
	/* out */
	__u8 verdict;   /* enum flow_verdict */
	__u8 reject;    /* enum pol_reject when verdict is VERDICT_REJECT */
	__u16 pad;
	__u32 entry[2]; /* allowed: counter slots (egress or tunnel, ingress); denied: point, slot; 16 bits each */
};

/* pol_canon turns flow key k into the canonical key of its flow (the
 * same for both ways: the lower of (address, port) of the two ends as
 * the source) and says whether it swapped the ends. */
static __always_inline int pol_canon(struct flow_key *k)
{
	__u64 a = (__u64)k->saddr << 16 | k->sport, b = (__u64)k->daddr << 16 | k->dport;
	if (a <= b)
		return 0;
	__u32 addr = k->saddr;
	__u16 port = k->sport;
	k->saddr = k->daddr;
	k->daddr = addr;
	k->sport = k->dport;
	k->dport = port;
	return 1;
}

/* pol_store writes decision dc of generation gen into flow entry f. */
static __always_inline void pol_store(struct flow *f, struct pol_decision *dc, __u32 verdict, __u32 reject, __u32 gen)
{
	f->verdict = verdict;
	f->nat_addr = gen;
	f->nat_port = reject;
	f->service = (dc->entry[0] & 0xffff) | dc->entry[1] << 16;
}

/* pol_load reads a flow entry's decision into dc. */
static __always_inline void pol_load(struct flow *f, struct pol_decision *dc)
{
	dc->verdict = f->verdict;
	dc->reject = f->nat_port;
	dc->entry[0] = f->service & 0xffff;
	dc->entry[1] = f->service >> 16;
}

#define POLICY_PASS (-1)

/* pol_popcnt counts the bits set in x, without branches. */
static __always_inline __u32 pol_popcnt(__u64 v)
{
	v = v - ((v >> 1) & 0x5555555555555555ULL);
	v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
	v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (v * 0x0101010101010101ULL) >> 56;
}

/* pol_ctz counts the trailing zeros of x (not 0) without branches (the
 * population count of the bits below the lowest set one), so each round
 * of the classification loop is one path for the verifier. */
static __always_inline __u32 pol_ctz(__u64 x)
{
	return pol_popcnt((x & -x) - 1);
}

/* pol_iphdr is the IPv4 header without the kernel's anonymous unions. */
struct pol_iphdr {
	__u8 ihl_version;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct pol_tcphdr {
	__u16 source;
	__u16 dest;
	__u32 seq;
	__u32 ack_seq;
	__u8 doff;
	__u8 flags;
	__u16 window;
	__u16 check;
	__u16 urg_ptr;
};

/* pol_slot is the slot of a key of four words in a direct-mapped cache
 * of n entries (a power of two): a multiply-shift hash whose products are
 * independent (no chain of rounds). */
static __always_inline __u32 pol_slot(__u32 a, __u32 b, __u32 c, __u32 d, __u32 n)
{
	__u64 m = (__u64)a * 0x9e3779b97f4a7c15ULL + (__u64)b * 0xc2b2ae3d27d4eb4fULL +
		  (__u64)c * 0x165667b19e3779f9ULL + (__u64)d * 0xd6e8feb86659fd93ULL;
	return (m >> 40) & (n - 1);
}

/* pol_class_entry: a per-CPU, direct-mapped cache of classifications in
 * front of pol_classify, for attachments without source-port rules (their
 * verdict does not depend on the source port): the first packet of a new
 * flow between the same addresses to the same port (a new connection of
 * the same client to the same service) takes its rule from here. Valid
 * while gen is the policy generation (attachment ids are rewritten only
 * under a new one). 24 bytes. */
struct pol_class_entry {
	__u32 attach;
	__u32 saddr;
	__u32 daddr;
	__u32 proto_dport; /* proto << 16 | dport as classified */
	__u32 gen;
	__s32 rule;        /* as pol_classify's x->rule */
};

#define POL_CLASS_CACHE 4096

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, POL_CLASS_CACHE);
	__type(key, __u32);
	__type(value, struct pol_class_entry);
} pol_class_cache SEC(".maps");

/* pol_work: the per-CPU room of a policy check (the stack is spent by the
 * programs that call it; tc programs do not nest on one CPU). */
struct pol_work {
	/* What an established flow's packet touches, first (one line). */
	struct pol_pkt pp; /* written by policy_pre, read by policy_check */
	__u32 vrf, from_tunnel, gen, bits;
	__u32 src, dst;
	struct pol_tuple t, ft;
	struct flow_key k, rk;
	struct pol_decision dc;
	struct flow nf;
	struct pol_iphdr ip, rip;
	struct pol_tcphdr th, rt;
	struct icmp_hdr ic;
	struct pol_addr_key ak;
	struct pol_port_key pk;
	__u8 quote[28];
	__u8 macs[12];
	__u8 rmacs[12];
	__u64 sm[POL_SUMMARY]; /* classification: words every bitmap has bits in, not visited yet */
	__s64 rule;            /* classification: the lowest matching rule, -1 for none */
	__u32 action, reject, entry, point, index, step;
	struct pol_ref ref[4]; /* classification: the entries of the four dimensions */
	__u64 below, w;        /* classification: the word visited */
	__u32 widx, j;         /* classification: the pol_words index looked up; the summary word */
	__u32 malformed;       /* pol_tuple_of: the L4 header cannot be read */
	__u32 opening;         /* pol_tuple_of: a TCP SYN without ACK */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pol_work);
} pol_works SEC(".maps");

static __always_inline struct pol_work *pol_work(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&pol_works, &zero);
}

/* pol_word looks up word k of bitmap r of x->ref (a word its summary
 * says is not zero; j = k / 64, below: the bits of summary[j] under
 * bit k % 64). */
static __always_inline __u64 *pol_word(struct pol_work *x, __u32 r, __u32 j, __u64 below)
{
	r &= 3;
	j &= POL_SUMMARY - 1; /* bounds the verifier can see */
	x->widx = x->ref[r].base[j] + pol_popcnt(x->ref[r].summary[j] & below);
	return bpf_map_lookup_elem(&pol_words, &x->widx);
}

/* pol_classify sets x->rule to the lowest rule of attachment a that x->t
 * matches, or -1. A global function: the verifier checks it once, not at
 * every call. */
__noinline int pol_classify(struct pol_work *x, __u32 a, __u32 has_sport)
{
	if (!x)
		return 0;
	x->rule = -1;
	x->ak.prefixlen = 64;
	x->ak.attach = bpf_htonl(a);
	x->ak.addr = x->t.saddr;
	struct pol_ref *r = bpf_map_lookup_elem(&pol_src, &x->ak);
	if (!r)
		return 0;
	x->ref[0] = *r;
	x->ak.addr = x->t.daddr;
	r = bpf_map_lookup_elem(&pol_dst, &x->ak);
	if (!r)
		return 0;
	x->ref[1] = *r;
	x->pk.prefixlen = 56;
	x->pk.attach = bpf_htonl(a);
	x->pk.proto = x->t.proto;
	x->pk.pad = 0;
	x->pk.port[0] = x->t.dport >> 8;
	x->pk.port[1] = x->t.dport & 0xff;
	r = bpf_map_lookup_elem(&pol_dport, &x->pk);
	if (!r)
		return 0;
	x->ref[2] = *r;
	if (has_sport) {
		x->pk.port[0] = x->t.sport >> 8;
		x->pk.port[1] = x->t.sport & 0xff;
		r = bpf_map_lookup_elem(&pol_sport, &x->pk);
		if (!r)
			return 0;
	}
	x->ref[3] = *r; /* without source ports the destination port's again: ANDing it twice changes nothing */
	/* The refs are copied into the work area, so that what the loop
	 * keeps across its lookups is x (no spill to the stack, which the
	 * programs that call this have spent). */
	for (__u32 i = 0; i < POL_SUMMARY; i++)
		x->sm[i] = x->ref[0].summary[i] & x->ref[1].summary[i] & x->ref[2].summary[i] & x->ref[3].summary[i];
	/* Visit the words every bitmap has bits in, lowest first. */
	for (__u32 n = 0; n < POL_WORDS; n++) {
		/* The first summary word with bits left, without branches:
		 * (v | -v) >> 63 is 1 when v is not 0. */
		__u64 z0 = 1 - ((x->sm[0] | -x->sm[0]) >> 63);
		__u64 z1 = 1 - ((x->sm[1] | -x->sm[1]) >> 63);
		__u64 z2 = 1 - ((x->sm[2] | -x->sm[2]) >> 63);
		__u32 j = z0 * (1 + z1 * (1 + z2));
		j &= POL_SUMMARY - 1;
		__u64 sm = x->sm[j];
		if (!sm)
			return 0;
		x->sm[j] = sm & (sm - 1);
		x->below = (sm & -sm) - 1;
		x->j = j;
		/* A word that is not there ends the classification at once
		 * (never, as the loader writes them): no path of the
		 * verifier's goes on from it. */
		__u64 *w = pol_word(x, 0, x->j, x->below);
		if (!w)
			return 0;
		x->w = *w;
		for (__u32 d = 1; d < 4; d++) {
			w = pol_word(x, d, x->j, x->below);
			if (!w)
				return 0;
			x->w &= *w;
		}
		if (x->w) {
			x->rule = (x->j * 64 + pol_popcnt(x->below)) * 64 + pol_ctz(x->w);
			return 0;
		}
	}
	return 0;
}

/* pol_eval evaluates x->t at attachment a into x->action, x->entry (the
 * counter slot of the matching entry, 0 for the default) and x->reject.
 * Attachment 0 accepts everything. */
static __always_inline void pol_eval(struct pol_work *x, __u32 a)
{
	x->entry = 0;
	x->reject = 0;
	x->action = POL_ACCEPT;
	if (!a)
		return;
	struct pol_attachment *at = bpf_map_lookup_elem(&pol_attach, &a);
	if (!at)
		return;
	x->action = at->default_action ? at->default_action : POL_DROP;
	x->reject = at->default_reject;
	if (!at->nrules)
		return; /* no rule: the default, without a lookup */
	if (at->has_sport) {
		pol_classify(x, a, 1);
	} else {
		__u32 pd = (__u32)x->t.proto << 16 | x->t.dport;
		__u32 h = pol_slot(a, x->t.saddr, x->t.daddr, pd, POL_CLASS_CACHE);
		struct pol_class_entry *ce = bpf_map_lookup_elem(&pol_class_cache, &h);
		if (ce && ce->gen == x->gen && ce->attach == a && ce->saddr == x->t.saddr && ce->daddr == x->t.daddr &&
		    ce->proto_dport == pd) {
			x->rule = ce->rule;
		} else {
			pol_classify(x, a, 0);
			if (ce) {
				ce->attach = a;
				ce->saddr = x->t.saddr;
				ce->daddr = x->t.daddr;
				ce->proto_dport = pd;
				ce->gen = x->gen;
				ce->rule = x->rule;
			}
		}
	}
	__s64 n = x->rule;
	if (n < 0 || n >= POL_MAX_RULES)
		return;
	__u32 rk = at->rules + (__u32)n;
	struct pol_rule *r = bpf_map_lookup_elem(&pol_rules, &rk);
	if (r) {
		x->entry = r->entry;
		x->reject = r->reject;
		x->action = r->action;
	}
}

static __always_inline __u32 pol_iface_attach(__u32 slot, int egress)
{
	if (slot == POL_NONE)
		return 0;
	struct pol_iface *pi = bpf_map_lookup_elem(&pol_ifaces, &slot);
	if (!pi)
		return 0;
	return egress ? pi->egress : pi->ingress;
}

static __always_inline __u32 pol_tunnel_attach(__u32 vrf)
{
	struct pol_vrf *pv = bpf_map_lookup_elem(&pol_vrfs, &vrf);
	return pv ? pv->tunnel : 0;
}

/* pol_decide evaluates the flow x->t in the direction it was opened
 * (into x->dc, whose vrf, src, dst and tunnel say where): first the
 * egress of its source pod (src, when local) or the VRF's tunnel ingress
 * (tunnel), then the ingress of its destination pod (dst, when local). */
static __noinline int pol_decide(struct pol_work *x)
{
	struct pol_decision *dc = &x->dc;
	dc->entry[0] = 0;
	dc->entry[1] = 0;
	for (__u32 step = 0; step < 2; step++) {
		__u32 a = 0;
		if (step == 0 && dc->src != POL_NONE) {
			x->point = POINT_EGRESS;
			x->index = dc->src;
			a = pol_iface_attach(dc->src, 1);
		} else if (step == 0 && dc->tunnel) {
			x->point = POINT_TUNNEL;
			x->index = dc->vrf;
			a = pol_tunnel_attach(dc->vrf);
		} else if (step == 1) {
			x->point = POINT_INGRESS;
			x->index = dc->dst;
			a = pol_iface_attach(dc->dst, 0);
		}
		pol_eval(x, a);
		if (x->action != POL_ACCEPT) {
			dc->verdict = x->action == POL_REJECT ? VERDICT_REJECT : VERDICT_DENY;
			dc->reject = x->reject;
			dc->entry[0] = x->point << POINT_SHIFT | (x->index & ((1 << POINT_SHIFT) - 1));
			dc->entry[1] = x->entry;
			return 0;
		}
		dc->entry[step & 1] = x->entry;
	}
	dc->verdict = VERDICT_ALLOW;
	return 0;
}

static __always_inline void pol_count_entry(__u32 slot, __u64 bytes)
{
	if (!slot)
		return;
	struct pol_counter *c = bpf_map_lookup_elem(&pol_entry_counters, &slot);
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* pol_count_denied counts a refused packet at its attachment point, in the
 * VRF, and on the entry that refused it. */
static __always_inline void pol_count_denied(__u32 vrf, __u32 point, __u32 entry, __u64 bytes)
{
	__u32 kind = point >> POINT_SHIFT, index = point & ((1 << POINT_SHIFT) - 1);
	if (kind == POINT_EGRESS || kind == POINT_INGRESS) {
		struct pol_denied *d = bpf_map_lookup_elem(&pol_iface_denied, &index);
		if (d) {
			if (kind == POINT_EGRESS)
				d->egress++;
			else
				d->ingress++;
		}
	}
	struct pol_denied *v = bpf_map_lookup_elem(&pol_vrf_denied, &vrf);
	if (v) {
		v->ingress++;
		if (kind == POINT_TUNNEL)
			v->egress++;
	}
	pol_count_entry(entry, bytes);
}

/* pol_relevant says whether any attachment concerns a packet between src
 * and dst (either may be POL_NONE, the other end being remote) in either
 * direction: only then are flows recorded, so that the replies of a flow
 * opened by an unprotected pod still pass a protected one. */
static __always_inline int pol_relevant(__u32 vrf, __u32 src, __u32 dst)
{
	if ((src == POL_NONE || dst == POL_NONE) && pol_tunnel_attach(vrf))
		return 1;
	if (src != POL_NONE) {
		struct pol_iface *pi = bpf_map_lookup_elem(&pol_ifaces, &src);
		if (pi && (pi->ingress | pi->egress))
			return 1;
	}
	if (dst != POL_NONE) {
		struct pol_iface *pi = bpf_map_lookup_elem(&pol_ifaces, &dst);
		if (pi && (pi->ingress | pi->egress))
			return 1;
	}
	return 0;
}

/* policy_note records in this CPU's pol_work the source of the packet at
 * l3 of vrf, and returns 1 (0 when it cannot be read). A global function:
 * its stack is not the caller's. */
__noinline int policy_note(struct __sk_buff *skb, __u32 vrf, __u32 l3)
{
	struct pol_work *x = pol_work();
	if (!x)
		return 0;
	struct pol_pkt *pp = &x->pp;
	pp->on = 0;
	pp->vrf = vrf;
	pp->l3 = l3;
	struct pol_iphdr *ip = &x->ip;
	if (bpf_skb_load_bytes(skb, l3, ip, sizeof(*ip)))
		return 0;
	pp->saddr = ip->saddr;
	pp->daddr = ip->daddr;
	__u16 ports[2] = {0, 0};
	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) && !(ip->frag_off & bpf_htons(0x1fff)) &&
	    bpf_skb_load_bytes(skb, l3 + (ip->ihl_version & 0xf) * 4, ports, 4))
		return 0;
	pp->sport = ports[0];
	pp->dport = ports[1];
	pp->on = 1;
	return 1;
}

/* policy_active says whether any attachment exists in vrf. */
static __always_inline int policy_active(__u32 vrf)
{
	struct pol_vrf *pv = bpf_map_lookup_elem(&pol_vrfs, &vrf);
	return pv && pv->active;
}

/* policy_reset forgets what policy_pre noted for an earlier packet; every
 * program that calls policy_check calls it first. */
static __always_inline void policy_reset(void)
{
	struct pol_work *x = pol_work();
	if (x)
		x->pp.on = 0;
}

/* policy_pre notes, before the flow table translates the packet at l3 of
 * vrf, its source (policy_check reads the packet itself when nothing was
 * noted: then nothing translated it). */
static __always_inline void policy_pre(struct __sk_buff *skb, __u32 vrf, __u32 l3)
{
	if (policy_active(vrf))
		policy_note(skb, vrf, l3);
}

/* The per-packet half. */
#include "policy_flow.h"

#endif
