/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps of the Isthmus forwarder. Every map is pinned by name under the
 * loader's bpffs directory so that a restarted loader adopts it.
 */
#ifndef ISTHMUS_MAPS_H
#define ISTHMUS_MAPS_H

#include "types.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} abi SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tunnel);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tunnel_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} iface_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DIRECT_IFINDEX);
	__type(key, __u32);
	__type(value, struct iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} iface_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ROUTES);
	__type(key, struct route_key);
	__type(value, struct route);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HOST_ROUTES);
	__type(key, struct host_key);
	__type(value, struct route);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} host_routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} route_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ROUTE_CACHE);
	__type(key, __u32);
	__type(value, struct route_cache_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} route_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_GROUPS);
	__type(key, __u32);
	__type(value, struct group);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENDPOINT_HINTS);
	__type(key, __u32);
	__type(value, struct endpoint_hint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} addr_hints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENDPOINT_HINTS);
	__type(key, __u32);
	__type(value, struct endpoint_hint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mac_hints SEC(".maps");

/* endpoint_vrfs is the set of (endpoint, VRF) pairs a decapsulated packet
 * may come from: bit vrf % 64 of word slot * ENDPOINT_VRF_WORDS + vrf / 64
 * is set while the VRF has routes through the endpoint. A label of a VRF
 * from an endpoint outside its set is dropped as unknown-endpoint, so an
 * underlay host can only inject into the VRFs it is a next hop of. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS * ENDPOINT_VRF_WORDS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_vrfs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, struct mac_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_macs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_LABELS);
	__type(key, __u32);
	__type(value, struct label_target);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} labels SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} iface_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct endpoint_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoint_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VRFS);
	__type(key, __u32);
	__type(value, struct drops);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vrf_drops SEC(".maps");

/* iface_at returns the interface entry of ifindex in, or NULL: from
 * the array below DIRECT_IFINDEX, else from the hash. The caller checks
 * the entry's ifindex. The empty asm keeps clang from sinking the two
 * lookups into one call on a selected map: the verifier inlines an array
 * lookup only when the call always sees the same map, and a real helper
 * call costs about 35 ns. */
static __always_inline struct iface *iface_at(__u32 in)
{
	struct iface *ifc;
	if (in < DIRECT_IFINDEX) {
		ifc = bpf_map_lookup_elem(&iface_index, &in);
	} else {
		ifc = bpf_map_lookup_elem(&ifaces, &in);
		asm volatile("" : "+r"(ifc));
	}
	return ifc;
}

#endif
