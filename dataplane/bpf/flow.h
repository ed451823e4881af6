/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow table and the service load balancer of the Isthmus forwarder.
 *
 * One flow table serves every user of per-flow state (services now; policy
 * and NAT later): an LRU hash keyed by (VRF, protocol, addresses, ports) in
 * the direction a packet travels. An entry holds the verdict, the rewrite
 * applied to packets going that way and the key of the other direction, so
 * a flow is two entries created together by its first packet, and every
 * later packet, either way, is one lookup.
 *
 * Services: a packet to a service's address:port (protocol) that matches no
 * flow picks a backend from the service's Maglev table (computed by the
 * loader, maglev.go) and creates the flow: the forward entry rewrites the
 * destination to the backend, the reply entry rewrites the source back to
 * the service. Packets that arrived over the tunnel use the table of local
 * backends only, unless the service's external traffic goes to every
 * backend (SERVICE_F_EXT_ALL): then a packet from a sender that does not
 * serve the service itself (the data center) may pick a backend of
 * another host, and is carried on to that host untranslated
 * (service_relay.h), which translates it to one of its own backends and
 * answers the client directly. ICMP errors about a translated flow are
 * translated too.
 *
 * The hot path of packets that no flow can concern stays two array reads:
 * flow_hints marks the (VRF, address) hash buckets of service addresses and
 * backends; a packet whose destination is no service address and whose
 * source is no backend skips the table.
 */
#ifndef ISTHMUS_FLOW_H
#define ISTHMUS_FLOW_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "types.h"

#define FLOW_ENTRIES (1 << 18) /* default; the loader sets Config.FlowEntries */
#define MAX_SERVICES 16384
#define MAX_BACKENDS (1 << 17)
#define MAGLEV_M 1021 /* entries of a Maglev table: a prime well above the backends of a service */
#define FLOW_HINTS 65536

/* flow_key: one direction of a flow. Addresses and ports in network byte
 * order; for ICMP echo, sport holds the identifier and dport 0. */
struct flow_key {
	__u32 vrf;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Rewrites of a flow entry. */
enum flow_nat {
	NAT_NONE = 0,
	NAT_DST = 1, /* destination := nat_addr:nat_port (service → backend) */
	NAT_SRC = 2, /* source := nat_addr:nat_port (backend → service) */
	NAT_RELAY = 3, /* untranslated, carried on to the host of backend (service_relay.h) */
};

/* flow_process_from's return for a packet to carry on to another host
 * (the backend slot is in *relay). */
#define FLOW_RELAY -3

/* A sender for flow_process_from: from the tunnel, local backends only
 * (whoever sent it). */
#define FLOW_FROM_TUNNEL_LOCAL 0xffffffff

/* Verdicts of a flow entry (policy sets DENY; services create ALLOW). */
enum flow_verdict {
	VERDICT_ALLOW = 0,
	VERDICT_DENY = 1,
};

/* flow.flags: what packets this way have shown (for the agent's timeouts). */
#define FLOW_F_SEEN 1  /* a packet went this way */
#define FLOW_F_SYN 2   /* TCP SYN */
#define FLOW_F_FIN 4   /* TCP FIN */
#define FLOW_F_RST 8   /* TCP RST */
#define FLOW_F_REPLY 0x100 /* this entry is the reply direction */
#define FLOW_OPEN 0x10000  /* flow_process only: a SYN without ACK, which reopens a closed flow */

/* flow: the value of one direction. seen is written by packets (at most
 * every FLOW_SEEN_GRAIN ns), flags only when they gain a bit, so a busy
 * flow does not bounce a cache line between CPUs on every packet. */
struct flow {
	__u64 seen;    /* bpf_ktime_get_ns() of the latest packet this way */
	__u64 created; /* bpf_ktime_get_ns() of the first packet */
	struct flow_key reverse; /* the other direction's key */
	__u32 nat_addr;
	__u16 nat_port;
	__u8 nat;     /* enum flow_nat */
	__u8 verdict; /* enum flow_verdict */
	__u32 flags;  /* FLOW_F_* */
	__u32 backend; /* backend slot, 0 for none */
	__u32 service; /* service slot, 0 for none */
};

#define FLOW_SEEN_GRAIN 250000000ULL /* 250 ms */

/* service_key: what a first packet's destination is matched on. */
struct service_key {
	__u32 vrf;
	__u32 addr; /* network byte order */
	__u16 port; /* network byte order */
	__u8 proto;
	__u8 pad;
};

#define SERVICE_F_AFFINITY 1 /* hash the client address only */
#define SERVICE_F_EXT_ALL 2  /* external traffic may go to any backend (relayed) */

/* service: a service's Maglev tables of backend slots, for pods (every
 * eligible backend) and for tunnel traffic (local ones only). A count of 0
 * means no backend: the first packet is dropped (no-route). */
struct service {
	__u32 id; /* service slot: counters */
	__u32 flags;
	__u32 count;
	__u32 local_count;
	__u32 table[MAGLEV_M];
	__u32 local[MAGLEV_M];
};

/* backend: by slot. */
struct backend {
	__u32 addr; /* network byte order */
	__u16 port; /* network byte order */
	__u16 pad;
	__u32 service; /* owner's service slot */
};

/* svc_stats: per-CPU counters of a service or a backend, by slot. */
struct svc_stats {
	__u64 packets;
	__u64 bytes;
	__u64 flows;
};

/* flow_stats: per-CPU counters of the flow table (one entry). expired is
 * written by the agent's garbage collector (CPU 0's copy). */
struct flow_stats {
	__u64 created;
	__u64 table_full;
	__u64 evicted;
	__u64 expired;
};

/* flow_hints bits. */
#define HINT_SERVICE 1 /* a service address hashes here */
#define HINT_BACKEND 2 /* a backend address hashes here */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOW_ENTRIES);
	__type(key, struct flow_key);
	__type(value, struct flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flow_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOW_HINTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flow_hints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct service_key);
	__type(value, struct service);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct svc_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} service_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct svc_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_counters SEC(".maps");

/* flow_hint_of returns the hint bits of (vrf, addr). The loader mirrors
 * the hash (flowHintIndex in services_linux.go). */
static __always_inline __u32 flow_hint_of(__u32 vrf, __u32 addr)
{
	__u32 i = mix32(addr ^ (vrf * 0x9e3779b9)) & (FLOW_HINTS - 1);
	__u32 *h = bpf_map_lookup_elem(&flow_hints, &i);
	return h ? *h : 0;
}

/* What flow_count counts. */
enum flow_event {
	FLOW_CREATED = 0,
	FLOW_TABLE_FULL = 1,
};

static __always_inline void flow_count(enum flow_event ev)
{
	__u32 zero = 0;
	struct flow_stats *s = bpf_map_lookup_elem(&flow_counters, &zero);
	if (!s)
		return;
	if (ev == FLOW_CREATED)
		s->created++;
	else
		s->table_full++;
}

/* svc_count counts a packet of bytes (bytes > 0) or a new flow (bytes 0)
 * of a service or backend slot. */
static __always_inline void svc_count(void *map, __u32 slot, __u64 bytes)
{
	struct svc_stats *s = bpf_map_lookup_elem(map, &slot);
	if (!s)
		return;
	if (bytes) {
		s->packets++;
		s->bytes += bytes;
	} else {
		s->flows++;
	}
}

/* nat_rewrite writes addr:port over the source (dst == 0) or the
 * destination of the IPv4 packet at l3 with its L4 header at l4, and fixes
 * the IPv4 and the TCP or UDP checksums with the kernel's helpers (which
 * also get CHECKSUM_PARTIAL packets right). It returns 0 or -1. */
static __always_inline int nat_rewrite(struct __sk_buff *skb, __u32 l3, __u32 l4, __u8 proto,
				       int dst, __u32 old_addr, __u32 new_addr,
				       __u16 old_port, __u16 new_port)
{
	__u32 addr_off = l3 + (dst ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	__u32 port_off = l4 + (dst ? 2 : 0);
	__u32 csum_off = l4 + (proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
						    : offsetof(struct udphdr, check));
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	if (old_addr != new_addr) {
		if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr,
					mangled | BPF_F_PSEUDO_HDR | sizeof(new_addr)))
			return -1;
		if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old_addr, new_addr,
					sizeof(new_addr)))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new_addr, sizeof(new_addr), 0))
			return -1;
	}
	if (old_port != new_port) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | sizeof(new_port)))
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port, sizeof(new_port), 0))
			return -1;
	}
	return 0;
}

/* flow_touch records a packet on an entry: its time and TCP flags. */
static __always_inline void flow_touch(struct flow *f, __u32 bits)
{
	__u64 now = bpf_ktime_get_ns();
	if (now - f->seen > FLOW_SEEN_GRAIN)
		f->seen = now;
	bits |= FLOW_F_SEEN;
	/* A plain write: two CPUs racing can only lose a bit that the next
	 * packet sets again. */
	if ((f->flags & bits) != bits)
		f->flags |= bits;
}

static __always_inline __u32 tcp_bits(__u8 tcpflags)
{
	__u32 bits = 0;
	if (tcpflags & 0x02)
		bits |= FLOW_F_SYN;
	if (tcpflags & 0x01)
		bits |= FLOW_F_FIN;
	if (tcpflags & 0x04)
		bits |= FLOW_F_RST;
	return bits;
}

/* Defined in service_relay.h, which needs the route lookup of forwarder.c. */
static __always_inline int svc_from_server(__u32 vrf, __u32 vip, __u32 epslot);
static __always_inline int svc_relay_hop(__u32 vrf, __u32 vip, __u32 backend_addr,
					 struct nexthop *hop);

/* flow_create handles the first packet of a flow to a service: it picks a
 * backend and creates both entries. from is the sending endpoint's slot
 * for a packet from the tunnel, 0 for one from a pod. Pods pick from
 * every eligible backend; tunnel traffic from the local ones, or, for a
 * SERVICE_F_EXT_ALL service and a sender that does not serve the service
 * itself, from every one: a backend of another host makes a relayed flow
 * (NAT_RELAY, no rewrite here), or, when no host that serves the service
 * leads to it, falls back to the local table. It returns a drop reason,
 * -1 with *out filled, or -2 when k is no service (the packet goes on
 * untouched). */
static __always_inline int flow_create(struct flow_key *k, __u32 from, __u32 bits,
				       struct flow *out)
{
	struct service_key sk = {.vrf = k->vrf, .addr = k->daddr, .port = k->dport, .proto = k->proto};
	struct service *s = bpf_map_lookup_elem(&services, &sk);
	if (!s)
		return -2;
	int all = !from || (from != FLOW_FROM_TUNNEL_LOCAL && (s->flags & SERVICE_F_EXT_ALL) &&
			    !svc_from_server(k->vrf, k->daddr, from));
	if (all ? !s->count : !s->local_count)
		return DROP_NO_ROUTE;
	__u32 h;
	if (s->flags & SERVICE_F_AFFINITY) {
		h = mix32(k->saddr ^ 0x9e3779b9);
	} else {
		h = mix32(k->saddr ^ 0x9e3779b9);
		h = mix32(h ^ k->daddr);
		h = mix32(h ^ ((__u32)k->sport << 16 | k->dport));
		h = mix32(h ^ k->proto);
	}
	/* 64 bits, so that the bounded register itself indexes the table. */
	__u64 idx = h % MAGLEV_M;
	asm volatile("" : "+r"(idx)); /* keep the bound check for the verifier */
	if (idx >= MAGLEV_M)
		return DROP_ERROR;
	__u32 *table = all ? s->table : s->local;
	__u32 b = table[idx];
	struct backend *be = bpf_map_lookup_elem(&backends, &b);
	if (!be || !be->addr)
		return DROP_NO_ROUTE;
	__u8 nat = NAT_DST;
	if (from && all) {
		struct nexthop hop;
		int r = svc_relay_hop(k->vrf, k->daddr, be->addr, &hop);
		if (r > 0) {
			nat = NAT_RELAY;
		} else if (r < 0) {
			/* No serving host leads to it: a local backend instead. */
			if (!s->local_count)
				return DROP_NO_ROUTE;
			b = s->local[idx];
			be = bpf_map_lookup_elem(&backends, &b);
			if (!be || !be->addr)
				return DROP_NO_ROUTE;
		}
	}
	__u64 now = bpf_ktime_get_ns();
	struct flow rev = {
		.seen = now,
		.created = now,
		.reverse = *k,
		.nat_addr = k->daddr,
		.nat_port = k->dport,
		.nat = NAT_SRC,
		.flags = FLOW_F_REPLY,
		.backend = b,
		.service = s->id,
	};
	struct flow_key rk = {
		.vrf = k->vrf,
		.saddr = be->addr,
		.daddr = k->saddr,
		.sport = be->port,
		.dport = k->sport,
		.proto = k->proto,
	};
	out->seen = now;
	out->created = now;
	out->reverse = rk;
	out->nat_addr = be->addr;
	out->nat_port = be->port;
	out->nat = nat;
	out->verdict = VERDICT_ALLOW;
	out->flags = FLOW_F_SEEN | bits;
	out->backend = b;
	out->service = s->id;
	if (nat == NAT_RELAY) {
		/* The reply leaves the backend's host straight to the client:
		 * the other entry only keeps the pair whole for the collector,
		 * keyed by the service, and counts as answered. */
		rk.saddr = k->daddr;
		rk.sport = k->dport;
		out->reverse = rk;
		rev.nat = NAT_NONE;
		rev.flags |= FLOW_F_SEEN;
	}
	if (bpf_map_update_elem(&flows, &rk, &rev, BPF_ANY) ||
	    bpf_map_update_elem(&flows, k, out, BPF_ANY)) {
		bpf_map_delete_elem(&flows, &rk);
		flow_count(FLOW_TABLE_FULL);
		return DROP_ERROR;
	}
	flow_count(FLOW_CREATED);
	svc_count(&service_counters, s->id, 0);
	svc_count(&backend_counters, b, 0);
	/* The packet itself is counted by the caller. */
	return -1;
}

/* icmp_hdr is the ICMP header (linux/icmp.h pulls in libc headers). */
struct icmp_hdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest;
};

/* ICMP types that quote the packet they are about: destination
 * unreachable, source quench, time exceeded, parameter problem. */
static __always_inline int icmp_is_error(__u8 type)
{
	return type == 3 || type == 4 || type == 11 || type == 12;
}

/* icmp_patch patches the ICMP checksum at icmp_csum for a 16-bit
 * field of the ICMP message that changed from old to new. */
static __always_inline int icmp_patch(struct __sk_buff *skb, __u32 icmp_csum, __u32 old,
				      __u32 new, __u32 size)
{
	return bpf_l4_csum_replace(skb, icmp_csum, old, new, size);
}

/* flow_icmp_error translates an ICMP error about a translated flow: the
 * quoted packet travelled the other way, so the entry of the error's own
 * direction is the one keyed by the quoted packet's reverse. With NAT_SRC
 * (an error from the backend's side), the quoted destination and the
 * error's source (when it is the backend itself) become the service; with
 * NAT_DST (an error from the client's side), the quoted source and the
 * error's destination become the backend. Every checksum is patched: outer
 * IPv4, quoted IPv4, quoted TCP/UDP (when quoted whole enough) and ICMP.
 * It returns -1 (done or nothing to do) or a drop reason. */
static __always_inline int flow_icmp_error(struct __sk_buff *skb, __u32 vrf, __u32 l3,
					   __u32 l4, struct iphdr *outer)
{
	__u32 icmp_csum = l4 + offsetof(struct icmp_hdr, checksum);
	__u32 q3 = l4 + sizeof(struct icmp_hdr);
	struct iphdr q;
	if (bpf_skb_load_bytes(skb, q3, &q, sizeof(q)))
		return -1;
	if (q.protocol != IPPROTO_TCP && q.protocol != IPPROTO_UDP)
		return -1;
	__u32 q4 = q3 + (q.ihl & 0xf) * 4;
	__u16 qports[2];
	if (bpf_skb_load_bytes(skb, q4, qports, sizeof(qports)))
		return -1;
	struct flow_key k = {
		.vrf = vrf,
		.saddr = q.daddr,
		.daddr = q.saddr,
		.sport = qports[1],
		.dport = qports[0],
		.proto = q.protocol,
	};
	struct flow *f = bpf_map_lookup_elem(&flows, &k);
	if (!f || f->nat == NAT_NONE)
		return -1;
	int src = f->nat == NAT_SRC;
	__u32 new_addr = f->nat_addr;
	__u16 new_port = f->nat_port;
	/* The quoted field: its destination for NAT_SRC, its source else. */
	__u32 old_addr = src ? q.daddr : q.saddr;
	__u16 old_port = src ? qports[1] : qports[0];
	__u32 qaddr_off = q3 + (src ? offsetof(struct iphdr, daddr) : offsetof(struct iphdr, saddr));
	__u32 qport_off = q4 + (src ? 2 : 0);
	/* Quoted L4 checksum, when the quote holds it. */
	__u32 qcsum_off = q4 + (q.protocol == IPPROTO_TCP ? offsetof(struct tcphdr, check)
							 : offsetof(struct udphdr, check));
	__u16 qcsum_old, qcsum_new;
	int has_qcsum = !bpf_skb_load_bytes(skb, qcsum_off, &qcsum_old, sizeof(qcsum_old));
	if (has_qcsum && !(q.protocol == IPPROTO_UDP && qcsum_old == 0)) {
		/* The quoted L4 checksum follows its pseudo-header and port, as
		 * a translated packet's would; the ICMP checksum follows it. */
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
		if (bpf_skb_store_bytes(skb, qcsum_off, &qcsum_new, sizeof(qcsum_new), 0) ||
		    icmp_patch(skb, icmp_csum, qcsum_old, qcsum_new, 2))
			return DROP_ERROR;
	}
	/* The quoted IPv4 header keeps its sum when its checksum is patched
	 * with the address, so the ICMP checksum sees only the port change. */
	if (bpf_l3_csum_replace(skb, q3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
	    bpf_skb_store_bytes(skb, qaddr_off, &new_addr, 4, 0) ||
	    bpf_skb_store_bytes(skb, qport_off, &new_port, 2, 0) ||
	    icmp_patch(skb, icmp_csum, old_port, new_port, 2))
		return DROP_ERROR;
	/* The error's own address: its source when it comes from the backend
	 * (not from a router on the way), its destination otherwise. */
	if (src && outer->saddr == old_addr) {
		if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
		    bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, saddr), &new_addr, 4, 0))
			return DROP_ERROR;
	} else if (!src && outer->daddr == old_addr) {
		if (bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old_addr, new_addr, 4) ||
		    bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, daddr), &new_addr, 4, 0))
			return DROP_ERROR;
	}
	svc_count(&service_counters, f->service, skb->len);
	return -1;
}

/* flow_process_from runs the flow table on the IPv4 packet at offset l3
 * of an skb whose VRF is known: a packet of a known flow is translated as
 * its entry says, the first packet to a service creates the flow. from is
 * the sending endpoint's slot for a packet from the tunnel (see
 * flow_create), 0 for one from a pod. It returns -1 to go on with the
 * (possibly rewritten) packet, whose pointers the caller must reload,
 * FLOW_RELAY with the backend slot in *relay for a packet to carry on to
 * another host untranslated, or a drop reason. */
static __always_inline int flow_process_from(struct __sk_buff *skb, __u32 vrf, __u32 l3,
					     __u32 from, __u32 *relay)
{
	struct iphdr ip;
	if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
		return -1;
	__u32 l4 = l3 + (ip.ihl & 0xf) * 4;
	if (ip.protocol == IPPROTO_ICMP) {
		struct icmp_hdr ic;
		if (bpf_skb_load_bytes(skb, l4, &ic, sizeof(ic)) || !icmp_is_error(ic.type))
			return -1;
		/* Only errors about a service or a backend can concern a flow. */
		struct iphdr q;
		if (bpf_skb_load_bytes(skb, l4 + sizeof(ic), &q, sizeof(q)))
			return -1;
		__u32 qh = flow_hint_of(vrf, q.saddr) | flow_hint_of(vrf, q.daddr);
		if (!qh)
			return -1;
		return flow_icmp_error(skb, vrf, l3, l4, &ip);
	}
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return -1;
	__u32 dh = flow_hint_of(vrf, ip.daddr);
	if (!(dh & HINT_SERVICE) && !(flow_hint_of(vrf, ip.saddr) & HINT_BACKEND))
		return -1;
	/* Fragments carry no ports: only whole packets are translated. */
	if (ip.frag_off & bpf_htons(0x3fff))
		return -1;
	__u16 ports[2];
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
		return -1;
	__u32 bits = 0;
	if (ip.protocol == IPPROTO_TCP) {
		__u8 tcpflags;
		if (bpf_skb_load_bytes(skb, l4 + 13, &tcpflags, 1))
			return -1;
		bits = tcp_bits(tcpflags);
		/* A new SYN on a closed flow opens a new one. */
		if ((tcpflags & 0x12) == 0x02)
			bits |= FLOW_OPEN;
	}
	struct flow_key k = {
		.vrf = vrf,
		.saddr = ip.saddr,
		.daddr = ip.daddr,
		.sport = ports[0],
		.dport = ports[1],
		.proto = ip.protocol,
	};
	struct flow nf;
	struct flow *f = bpf_map_lookup_elem(&flows, &k);
	if (f && (bits & FLOW_OPEN) && !(f->flags & FLOW_F_REPLY) &&
	    (f->flags & (FLOW_F_FIN | FLOW_F_RST)))
		f = 0;
	bits &= ~FLOW_OPEN;
	int created = 0;
	if (!f) {
		if (!(dh & HINT_SERVICE))
			return -1;
		int r = flow_create(&k, from, bits, &nf);
		if (r == -2)
			return -1;
		if (r >= 0)
			return r;
		f = &nf;
		created = 1;
	}
	if (!created)
		flow_touch(f, bits);
	__u32 nat = f->nat, nat_addr = f->nat_addr, service = f->service, backend = f->backend;
	__u16 nat_port = f->nat_port;
	if (nat == NAT_DST) {
		if (nat_rewrite(skb, l3, l4, ip.protocol, 1, ip.daddr, nat_addr, ports[1], nat_port))
			return DROP_ERROR;
	} else if (nat == NAT_SRC) {
		if (nat_rewrite(skb, l3, l4, ip.protocol, 0, ip.saddr, nat_addr, ports[0], nat_port))
			return DROP_ERROR;
	}
	if (service) {
		svc_count(&service_counters, service, skb->len);
		svc_count(&backend_counters, backend, skb->len);
	}
	if (nat == NAT_RELAY) {
		*relay = backend;
		return FLOW_RELAY;
	}
	return -1;
}

/* flow_process is flow_process_from for a pod's packet (from_tunnel 0) or
 * a tunnelled one (nonzero) whose new flows take local backends only. */
static __always_inline int flow_process(struct __sk_buff *skb, __u32 vrf, __u32 l3, int from_tunnel)
{
	__u32 relay = 0;
	int r = flow_process_from(skb, vrf, l3, from_tunnel ? FLOW_FROM_TUNNEL_LOCAL : 0, &relay);
	return r == FLOW_RELAY ? DROP_NO_ROUTE : r;
}

/* flow_wanted says whether the flow table can concern a packet of vrf
 * (read in place, before any rewrite): TCP or UDP to a service address or
 * from a backend, or ICMP (an error may quote a translated packet). Two
 * inlined array reads, so packets no flow concerns pay almost nothing. */
static __always_inline int flow_wanted(__u32 vrf, struct iphdr *ip)
{
	if (ip->protocol == IPPROTO_ICMP)
		return 1;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return 0;
	return (flow_hint_of(vrf, ip->daddr) & HINT_SERVICE) ||
	       (flow_hint_of(vrf, ip->saddr) & HINT_BACKEND);
}

/* flow_label_wanted is flow_wanted for the inner packet of a tunnelled
 * frame, in the VRF of its admitted label lt (stored in *vrf): a packet to
 * a service is translated to a local backend before the label decides
 * where it goes, a reply from a remote backend back to the service. A
 * label whose VRF has no service (LABEL_F_NO_SERVICES, in the entry the
 * label step has just read) skips the hints: no service or backend can
 * concern its packets. Short packets are left to the label step, which
 * drops and counts them. */
static __always_inline int flow_label_wanted(struct label_target *lt, struct iphdr *inner,
					     void *data_end, __u32 *vrf)
{
	if (lt->flags & LABEL_F_NO_SERVICES)
		return 0;
	if ((void *)(inner + 1) > data_end)
		return 0;
	*vrf = lt->vrf;
	return flow_wanted(lt->vrf, inner);
}

#endif
