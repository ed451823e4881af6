/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * External connectivity of a VRF (isthmus-external.yang): what a pod's
 * packet to a destination without a VRF route becomes.
 *
 *   host access  a destination the host's FIB calls local (one of the
 *                node's addresses) goes to the node's own stack, entering
 *                it through the host device (isthmus-host);
 *   SNAT         a destination the host's FIB forwards leaves through the
 *                host's interface toward it with the source translated to
 *                the VRF's SNAT address and a port (ICMP echo: identifier)
 *                from the VRF's range; the reply is translated back and
 *                delivered to the pod;
 *   otherwise    dropped (no-route).
 *
 * A pod bound to a floating IP is translated 1:1 instead: its packets to
 * destinations without a VRF route leave from the floating address
 * (ports untouched, no flow state), and packets to the floating address
 * arriving on the underlay are delivered to it.
 *
 * Translations live in the shared flow table (flow.h): the forward entry,
 * keyed in the pod's VRF, rewrites the source (NAT_SRC); the reply entry,
 * keyed in VRF 0 (the host) by the remote address and port and the SNAT
 * address and port, rewrites the destination (NAT_DST) and names the pod's
 * VRF in its reverse key. VRF ranges never overlap (validated), so pods of
 * two VRFs with one address never share a reply key. A port is taken by
 * inserting the reply entry with BPF_NOEXIST, so a port is shared by flows
 * to different remote ends but never by two flows to one.
 *
 * Included by forwarder.c after its helpers (route_lookup,
 * deliver, count_drop, count_iface), which it uses.
 */
#ifndef ISTHMUS_NAT_H
#define ISTHMUS_NAT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "types.h"
#include "flow.h"

#define NAT_F_SNAT 1 /* translate and send out through the host */
#define NAT_F_HOST 2 /* host access: the node's addresses go to its stack */

/* FLOW_F_EXTERNAL marks the flow entries of source NAT (flow.flags). */
#define FLOW_F_EXTERNAL 0x8000

#define NAT_PROBES 16 /* ports tried for a new flow before it counts as exhausted */
#define AF_INET_ 2

/* nat_vrf: a VRF's external connectivity, by VRF id. */
struct nat_vrf {
	__u32 flags;    /* NAT_F_* */
	__u32 addr;     /* SNAT source address, network byte order */
	__u16 port_min; /* SNAT ports, host byte order */
	__u16 port_max;
};

/* nat_stats: per-CPU counters of a VRF's external traffic, by VRF id. */
struct nat_stats {
	__u64 translations; /* packets translated, both directions */
	__u64 flows;        /* flows created */
	__u64 exhausted;    /* first packets without a free port */
	__u64 dropped;      /* packets without a route dropped here */
	__u64 host;         /* packets passed to the node's stack */
};

/* nat_global: entry 0 of nat_host. min..max is the union of every VRF's
 * range, so that the underlay's other traffic pays two compares;
 * host_ifindex and host_mac are the device through which packets of host
 * access enter the node's stack (a pod veth cannot pass them up itself: it
 * is a port of the down headroom bridge, links_linux.go). */
struct nat_global {
	__u16 min;
	__u16 max;
	__u32 host_ifindex;
	__u8 host_mac[6];
	__u16 floating; /* 1 while any floating IP is bound */
};

/* floating_pod: where a floating IP leads (floating_in, by the floating
 * address in network byte order). */
struct floating_pod {
	__u32 vrf;
	__u32 pod; /* network byte order */
	__u32 ext; /* the external VRF it is advertised in (VPNv4), 0: IPv4 unicast */
};

#define MAX_FLOATING 16384

/* floating_vpn: a pod (VRF id, address) whose floating IP is advertised
 * as VPNv4 in an external VRF: its packets to destinations without a
 * route in its own VRF that the external VRF has a route for leave from
 * the floating address through that route. */
struct floating_ext {
	__u32 ext;  /* the external VRF */
	__u32 addr; /* the floating address, network byte order */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VRFS);
	__type(key, __u32);
	__type(value, struct nat_vrf);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nat_vrfs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VRFS);
	__type(key, __u32);
	__type(value, struct nat_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nat_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nat_global);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nat_host SEC(".maps");

/* Floating IPs, 1:1 both ways: floating_in maps a floating address to its
 * pod, floating_out a pod (VRF id, address) to its floating address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FLOATING);
	__type(key, __u32);
	__type(value, struct floating_pod);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} floating_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FLOATING);
	__type(key, struct host_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} floating_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FLOATING);
	__type(key, struct host_key);
	__type(value, struct floating_ext);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} floating_vpn SEC(".maps");

/* nat_scratch: per-CPU room for what the NAT steps would otherwise keep
 * on the stack, which the programs calling them have mostly used up (tc
 * programs do not nest on one CPU, so one entry per CPU is enough). */
struct nat_scratch {
	__u64 fib[8]; /* struct bpf_fib_lookup, whose anonymous unions bpf2go cannot mirror */
	struct flow flow;
	struct flow_key key;
	struct flow_key rkey;
	__u32 ip[5]; /* struct iphdr (bitfields and unions bpf2go cannot mirror) */
	__u32 q[5];  /* the IPv4 header an ICMP error quotes */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nat_scratch);
} nat_scratch SEC(".maps");

/* floating_target: per-CPU room for the label target of a packet
 * translated by nat_floating_decap. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct label_target);
} floating_target SEC(".maps");

enum nat_event {
	NAT_TRANSLATED = 0,
	NAT_FLOW = 1,
	NAT_EXHAUSTED = 2,
	NAT_DROPPED = 3,
	NAT_HOST = 4,
};

static __always_inline void nat_count(__u32 vrf, enum nat_event ev)
{
	struct nat_stats *s = bpf_map_lookup_elem(&nat_counters, &vrf);
	if (!s)
		return;
	switch (ev) {
	case NAT_TRANSLATED: s->translations++; break;
	case NAT_FLOW: s->flows++; break;
	case NAT_EXHAUSTED: s->exhausted++; break;
	case NAT_DROPPED: s->dropped++; break;
	case NAT_HOST: s->host++; break;
	}
}

#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO 8

/* nat_icmp_rewrite writes addr over the source (dst == 0) or destination
 * of an ICMP echo packet and id over its identifier. The ICMP checksum
 * has no pseudo-header: only the identifier changes it. */
static __always_inline int nat_icmp_rewrite(struct __sk_buff *skb, __u32 l3, __u32 l4, int dst,
					    __u32 old_addr, __u32 new_addr, __u16 old_id, __u16 new_id)
{
	__u32 addr_off = l3 + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
	    bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0))
		return -1;
	if (old_id != new_id &&
	    (bpf_l4_csum_replace(skb, l4 + offsetof(struct icmp_hdr, checksum), old_id, new_id, 2) ||
	     bpf_skb_store_bytes(skb, l4 + 4, &new_id, 2, 0)))
		return -1;
	return 0;
}

/* nat_rewrite_any rewrites a TCP, UDP or ICMP echo packet's source or
 * destination address and port (identifier). */
static __always_inline int nat_rewrite_any(struct __sk_buff *skb, __u32 l3, __u32 l4, __u8 proto,
					   int dst, __u32 old_addr, __u32 new_addr,
					   __u16 old_port, __u16 new_port)
{
	if (proto == IPPROTO_ICMP)
		return nat_icmp_rewrite(skb, l3, l4, dst, old_addr, new_addr, old_port, new_port);
	return nat_rewrite(skb, l3, l4, proto, dst, old_addr, new_addr, old_port, new_port);
}

/* nat_floating_rewrite writes addr over the source (dst == 0) or the
 * destination of the packet at l3: the IPv4 checksum always, the TCP or
 * UDP checksum (pseudo-header) in a whole packet or first fragment; ports
 * stay as they are (1:1). */
static __always_inline int nat_floating_rewrite(struct __sk_buff *skb, struct iphdr *ip, __u32 l3,
						int dst, __u32 new_addr)
{
	__u32 old_addr = dst ? ip->daddr : ip->saddr;
	__u32 l4 = l3 + (ip->ihl & 0xf) * 4;
	if ((ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) &&
	    !(ip->frag_off & bpf_htons(0x1fff)))
		return nat_rewrite(skb, l3, l4, ip->protocol, dst, old_addr, new_addr, 0, 0);
	__u32 addr_off = l3 + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
	    bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0))
		return -1;
	return 0;
}

/* nat_ttl_decrement lowers the TTL of the IPv4 header at l3 (the caller
 * checked it is above 1). */
static __always_inline int nat_ttl_decrement(struct __sk_buff *skb, __u32 l3, __u8 ttl, __u8 proto)
{
	__u16 old = bpf_htons((__u16)ttl << 8 | proto), new = bpf_htons((__u16)(ttl - 1) << 8 | proto);
	__u8 nttl = ttl - 1;
	if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old, new, 2) ||
	    bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, ttl), &nttl, 1, 0))
		return -1;
	return 0;
}

/* nat_l4 reads the key fields of a TCP, UDP or ICMP echo packet: its ports
 * (identifier and 0 for ICMP) and, for TCP, its flow bits. It returns 0,
 * or -1 for anything SNAT does not translate. */
static __always_inline int nat_l4(struct __sk_buff *skb, struct iphdr *ip, __u32 l4, int request,
				  __u16 ports[2], __u32 *bits)
{
	*bits = 0;
	if (ip->frag_off & bpf_htons(0x3fff))
		return -1; /* fragments carry no ports */
	if (ip->protocol == IPPROTO_ICMP) {
		struct icmp_hdr ic;
		if (bpf_skb_load_bytes(skb, l4, &ic, sizeof(ic)))
			return -1;
		if (ic.type != (request ? ICMP_ECHO : ICMP_ECHO_REPLY) || ic.code)
			return -1;
		ports[0] = ic.rest & 0xffff; /* the identifier, network byte order */
		ports[1] = 0;
		return 0;
	}
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return -1;
	if (bpf_skb_load_bytes(skb, l4, ports, 4))
		return -1;
	if (ip->protocol == IPPROTO_TCP) {
		__u8 tcpflags;
		if (bpf_skb_load_bytes(skb, l4 + 13, &tcpflags, 1))
			return -1;
		*bits = tcp_bits(tcpflags);
	}
	return 0;
}

/* nat_create allocates a port of the VRF's range for the flow s->key
 * and creates its two entries, using s->rkey and s->flow; s->flow is left
 * holding the forward entry. It returns -1, or a drop reason. */
static __always_inline int nat_create(struct nat_scratch *s, struct nat_vrf *cfg, __u32 bits)
{
	struct flow_key *k = &s->key, *rk = &s->rkey;
	struct flow *f = &s->flow;
	__u32 span = (__u32)cfg->port_max - cfg->port_min + 1;
	if (cfg->port_max < cfg->port_min || !cfg->port_min)
		return DROP_NO_ROUTE;
	__u32 h = mix32(k->saddr ^ 0x9e3779b9);
	h = mix32(h ^ k->daddr);
	h = mix32(h ^ ((__u32)k->sport << 16 | k->dport));
	h = mix32(h ^ k->proto ^ (k->vrf << 8));
	__u32 start = h % span;
	__u64 now = bpf_ktime_get_ns();
	__builtin_memset(f, 0, sizeof(*f));
	f->seen = now;
	f->created = now;
	f->reverse = *k;
	f->nat_addr = k->saddr;
	f->nat_port = k->sport;
	f->nat = NAT_DST;
	f->flags = FLOW_F_REPLY | FLOW_F_EXTERNAL;
	__builtin_memset(rk, 0, sizeof(*rk));
	rk->saddr = k->daddr;
	rk->daddr = cfg->addr;
	rk->sport = k->dport;
	rk->proto = k->proto;
	int found = 0;
	for (int i = 0; i < NAT_PROBES; i++) {
		__u32 off = start + i;
		if (off >= span)
			off -= span;
		if (off >= span)
			off = 0; /* span < NAT_PROBES wrapped twice */
		__u16 port = bpf_htons((__u16)(cfg->port_min + off));
		if (k->proto == IPPROTO_ICMP)
			rk->sport = port; /* echo replies carry the identifier */
		else
			rk->dport = port;
		if (!bpf_map_update_elem(&flows, rk, f, BPF_NOEXIST)) {
			found = 1;
			break;
		}
	}
	if (!found) {
		nat_count(k->vrf, NAT_EXHAUSTED);
		return DROP_NO_ROUTE;
	}
	f->reverse = *rk;
	f->nat_addr = cfg->addr;
	f->nat_port = k->proto == IPPROTO_ICMP ? rk->sport : rk->dport;
	f->nat = NAT_SRC;
	f->flags = FLOW_F_SEEN | FLOW_F_EXTERNAL | bits;
	if (bpf_map_update_elem(&flows, k, f, BPF_ANY)) {
		bpf_map_delete_elem(&flows, rk);
		flow_count(FLOW_TABLE_FULL);
		return DROP_ERROR;
	}
	flow_count(FLOW_CREATED);
	nat_count(k->vrf, NAT_FLOW);
	return -1;
}

/* nat_error_out translates an ICMP error a pod sends about a packet it
 * received through SNAT (the quoted packet: remote → pod:port, TCP or
 * UDP): the error's source and the quoted destination become the SNAT
 * address and port, with the outer IPv4, quoted IPv4, quoted L4 (when
 * quoted) and ICMP checksums patched. It returns 1 when translated, 0
 * when the error concerns no flow of ours, -1 on a failed rewrite. */
static __always_inline int nat_error_out(struct __sk_buff *skb, struct nat_scratch *s, __u32 l3,
					 __u32 l4, __u32 vrf, __u32 saddr)
{
	__u32 icmp_csum = l4 + offsetof(struct icmp_hdr, checksum);
	__u32 q3 = l4 + sizeof(struct icmp_hdr);
	struct iphdr *qh = (void *)s->q;
	if (bpf_skb_load_bytes(skb, q3, qh, sizeof(*qh)) || qh->daddr != saddr ||
	    (qh->protocol != IPPROTO_TCP && qh->protocol != IPPROTO_UDP))
		return 0;
	__u8 qproto = qh->protocol;
	__u32 remote = qh->saddr;
	__u32 q4 = q3 + (qh->ihl & 0xf) * 4;
	__u16 qp[2];
	if (bpf_skb_load_bytes(skb, q4, qp, sizeof(qp)))
		return 0;
	struct flow_key *k = &s->rkey;
	__builtin_memset(k, 0, sizeof(*k));
	k->vrf = vrf;
	k->saddr = saddr;
	k->daddr = remote;
	k->sport = qp[1];
	k->dport = qp[0];
	k->proto = qproto;
	struct flow *f = bpf_map_lookup_elem(&flows, k);
	if (!f || !(f->flags & FLOW_F_EXTERNAL) || f->nat != NAT_SRC)
		return 0;
	__u32 new_addr = f->nat_addr, old_addr = saddr;
	__u16 new_port = f->nat_port, old_port = qp[1];
	__u32 qcsum_off = q4 + (qproto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
						  : offsetof(struct udphdr, check));
	__u16 qcsum_old, qcsum_new;
	if (!bpf_skb_load_bytes(skb, qcsum_off, &qcsum_old, 2) &&
	    !(qproto == IPPROTO_UDP && qcsum_old == 0)) {
		__u32 sum = (__u16)~qcsum_old;
		sum += (__u16)~(old_addr & 0xffff);
		sum += (__u16)~(old_addr >> 16);
		sum += new_addr & 0xffff;
		sum += new_addr >> 16;
		sum += (__u16)~old_port;
		sum += new_port;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		qcsum_new = ~sum;
		if (bpf_skb_store_bytes(skb, qcsum_off, &qcsum_new, 2, 0) ||
		    bpf_l4_csum_replace(skb, icmp_csum, qcsum_old, qcsum_new, 2))
			return -1;
	}
	if (bpf_l3_csum_replace(skb, q3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
	    bpf_skb_store_bytes(skb, q3 + offsetof(struct iphdr, daddr), &new_addr, 4, 0) ||
	    bpf_skb_store_bytes(skb, q4 + 2, &new_port, 2, 0) ||
	    bpf_l4_csum_replace(skb, icmp_csum, old_port, new_port, 2) ||
	    bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
	    bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, saddr), &new_addr, 4, 0))
		return -1;
	flow_touch(f, 0);
	return 1;
}

/* nat_no_route handles a pod's packet whose destination has no route in
 * its VRF (the caller counts a returned drop reason in the VRF). It
 * returns -1 with *act the tc verdict, or a drop reason. */
static __noinline int nat_no_route(struct __sk_buff *skb, __u32 vrf, int *act)
{
	__u32 zero = 0;
	struct nat_vrf *cfg = bpf_map_lookup_elem(&nat_vrfs, &vrf);
	struct nat_global *g = bpf_map_lookup_elem(&nat_host, &zero);
	int floating = g && g->floating;
	__u32 flags = cfg ? cfg->flags : 0;
	if (!flags && !floating)
		return DROP_NO_ROUTE;
	struct nat_scratch *s = bpf_map_lookup_elem(&nat_scratch, &zero);
	if (!s)
		return DROP_ERROR;
	__u32 l3 = sizeof(struct ethhdr);
	struct iphdr *ip = (void *)s->ip;
	if (bpf_skb_load_bytes(skb, l3, ip, sizeof(*ip)))
		return DROP_MALFORMED;
	/* A pod with a floating IP leaves from it, whatever the mode. */
	__u32 fip = 0;
	if (floating) {
		struct host_key hk = {.vrf = vrf, .addr = ip->saddr};
		__u32 *f = bpf_map_lookup_elem(&floating_out, &hk);
		if (f)
			fip = *f;
	}
	if (!fip && !flags)
		return DROP_NO_ROUTE;
	_Static_assert(sizeof(struct bpf_fib_lookup) == sizeof(s->fib), "fib room");
	struct bpf_fib_lookup *fib = (void *)s->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET_;
	fib->tos = ip->tos;
	fib->l4_protocol = ip->protocol;
	fib->ifindex = skb->ifindex;
	fib->ipv4_src = fip ? fip : (cfg ? cfg->addr : 0);
	fib->ipv4_dst = ip->daddr;
	int rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (fip && (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH)) {
		if (nat_floating_rewrite(skb, ip, l3, 0, fip) ||
		    nat_ttl_decrement(skb, l3, ip->ttl, ip->protocol))
			return DROP_ERROR;
		nat_count(vrf, NAT_TRANSLATED);
		goto out;
	}
	if (!cfg)
		return DROP_NO_ROUTE;
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED && (flags & NAT_F_HOST)) {
		/* One of the node's addresses: its stack answers, through the
		 * host device, and its reply reaches the pod through the pod's
		 * host route. */
		if (!g || !g->host_ifindex) {
			nat_count(vrf, NAT_DROPPED);
			return DROP_NO_ROUTE;
		}
		if (bpf_skb_store_bytes(skb, 0, g->host_mac, ETH_ALEN, 0))
			return DROP_ERROR;
		nat_count(vrf, NAT_HOST);
		*act = bpf_redirect(g->host_ifindex, BPF_F_INGRESS);
		return -1;
	}
	if ((rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) ||
	    !(cfg->flags & NAT_F_SNAT)) {
		nat_count(vrf, NAT_DROPPED);
		return DROP_NO_ROUTE;
	}
	__u32 l4 = l3 + (ip->ihl & 0xf) * 4;
	__u16 ports[2];
	__u32 bits;
	if (ip->protocol == IPPROTO_ICMP && !(ip->frag_off & bpf_htons(0x3fff))) {
		/* An error about a packet the pod received through SNAT. */
		struct icmp_hdr ic;
		if (!bpf_skb_load_bytes(skb, l4, &ic, sizeof(ic)) && icmp_is_error(ic.type)) {
			int q = nat_error_out(skb, s, l3, l4, vrf, ip->saddr);
			if (q < 0 || (q > 0 && nat_ttl_decrement(skb, l3, ip->ttl, ip->protocol)))
				return DROP_ERROR;
			if (q == 0) {
				nat_count(vrf, NAT_DROPPED);
				return DROP_NO_ROUTE;
			}
			nat_count(vrf, NAT_TRANSLATED);
			goto out;
		}
	}
	if (nat_l4(skb, ip, l4, 1, ports, &bits)) {
		nat_count(vrf, NAT_DROPPED);
		return DROP_NO_ROUTE;
	}
	struct flow_key *k = &s->key;
	__builtin_memset(k, 0, sizeof(*k));
	k->vrf = vrf;
	k->saddr = ip->saddr;
	k->daddr = ip->daddr;
	k->sport = ports[0];
	k->dport = ports[1];
	k->proto = ip->protocol;
	__u32 new_addr;
	__u16 new_port;
	struct flow *f = bpf_map_lookup_elem(&flows, k);
	if (f && !(f->flags & FLOW_F_EXTERNAL))
		return DROP_NO_ROUTE; /* another user's flow: never ours to send out */
	if (f) {
		flow_touch(f, bits);
		new_addr = f->nat_addr;
		new_port = f->nat_port;
	} else {
		int r = nat_create(s, cfg, bits);
		if (r >= 0) {
			if (r != DROP_NO_ROUTE)
				nat_count(vrf, NAT_DROPPED);
			return r;
		}
		new_addr = s->flow.nat_addr;
		new_port = s->flow.nat_port;
	}
	if (nat_rewrite_any(skb, l3, l4, ip->protocol, 0, ip->saddr, new_addr, ports[0], new_port) ||
	    nat_ttl_decrement(skb, l3, ip->ttl, ip->protocol)) {
		nat_count(vrf, NAT_DROPPED);
		return DROP_ERROR;
	}
	nat_count(vrf, NAT_TRANSLATED);
out:
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {.nh_family = AF_INET_, .ipv4_nh = fib->ipv4_dst};
		*act = bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
		return -1;
	}
	if (bpf_skb_store_bytes(skb, 0, fib->dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fib->smac, ETH_ALEN, 0))
		return DROP_ERROR;
	*act = bpf_redirect(fib->ifindex, 0);
	return -1;
}

/* nat_floating_egress: a pod's packet whose destination has no route in
 * its VRF (vrf), from a pod whose floating IP is advertised in an
 * external VRF that routes the destination, leaves from the floating
 * address through the external VRF. It returns the external VRF id with
 * the source rewritten, 0 when this does not apply (nothing is changed),
 * or -1 when the rewrite failed. */
static __noinline int nat_floating_egress(struct __sk_buff *skb, __u32 vrf)
{
	__u32 zero = 0;
	struct nat_global *g = bpf_map_lookup_elem(&nat_host, &zero);
	if (!g || !g->floating)
		return 0;
	struct nat_scratch *s = bpf_map_lookup_elem(&nat_scratch, &zero);
	if (!s)
		return 0;
	__u32 l3 = sizeof(struct ethhdr);
	struct iphdr *ip = (void *)s->ip;
	if (bpf_skb_load_bytes(skb, l3, ip, sizeof(*ip)))
		return 0;
	struct host_key hk = {.vrf = vrf, .addr = ip->saddr};
	struct floating_ext *fe = bpf_map_lookup_elem(&floating_vpn, &hk);
	if (!fe)
		return 0;
	__u32 ext = fe->ext, fip = fe->addr;
	if (!ext || !route_lookup(ext, ip->daddr))
		return 0;
	if (nat_floating_rewrite(skb, ip, l3, 0, fip))
		return -1;
	nat_count(vrf, NAT_TRANSLATED);
	return ext;
}

/* nat_floating_decap: a packet decapsulated with a label of VRF vrf whose
 * inner destination (at l3) is a floating IP advertised in that VRF is
 * translated to its pod. It returns the pod's VRF id with the destination
 * rewritten, 0 when this does not apply (nothing is changed), or -1 when
 * the rewrite failed. */
static __noinline int nat_floating_decap(struct __sk_buff *skb, __u32 l3, __u32 vrf)
{
	__u32 zero = 0;
	struct nat_global *g = bpf_map_lookup_elem(&nat_host, &zero);
	if (!g || !g->floating)
		return 0;
	struct nat_scratch *s = bpf_map_lookup_elem(&nat_scratch, &zero);
	if (!s)
		return 0;
	struct iphdr *ip = (void *)s->ip;
	if (l3 > 256 || bpf_skb_load_bytes(skb, l3, ip, sizeof(*ip)) || ip->version != 4)
		return 0;
	struct floating_pod *fp = bpf_map_lookup_elem(&floating_in, &ip->daddr);
	if (!fp || !fp->ext || fp->ext != vrf)
		return 0;
	__u32 pvrf = fp->vrf, pod = fp->pod;
	if (nat_floating_rewrite(skb, ip, l3, 1, pod))
		return -1;
	nat_count(pvrf, NAT_TRANSLATED);
	return pvrf;
}

/* nat_floating_label is the label target a packet translated by
 * nat_floating_decap is delivered by: a per-VRF lookup in the pod's VRF. */
static __always_inline struct label_target *nat_floating_label(__u32 vrf)
{
	__u32 zero = 0;
	struct label_target *lt = bpf_map_lookup_elem(&floating_target, &zero);
	if (!lt)
		return 0;
	lt->kind = LABEL_VRF;
	lt->vrf = vrf;
	lt->slot = 0;
	return lt;
}

#include "nat_reply.h"

#endif
