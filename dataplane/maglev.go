package dataplane

import (
	"hash/fnv"
	"net/netip"
	"slices"
)

// maglevSize is the number of entries of a service's Maglev table
// (MAGLEV_M in bpf/flow.h): a prime, so every backend's permutation visits
// every entry, and far above the backends of a service, so that each gets
// a share within about 1% of its weight.
const maglevSize = 1021

// Service is a virtual address of a VRF, load-balanced by the forwarder
// over its backends.
type Service struct {
	ServiceKey
	// Affinity hashes only the client's address, so every flow of a client
	// goes to one backend while the backends do not change.
	Affinity bool
	// Backends are the pods behind the service.
	Backends []Backend
}

// ServiceKey identifies a service: protocol, address and port in a VRF.
type ServiceKey struct {
	VRF   string
	Addr  netip.Addr
	Proto Protocol
	Port  uint16
}

// Protocol is an IP protocol number a service balances.
type Protocol uint8

// Protocols of services.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// BackendKey identifies a backend of a service: pod address and port.
type BackendKey struct {
	Addr netip.Addr
	Port uint16
}

// Backend is one pod behind a service.
type Backend struct {
	BackendKey
	// Weight is the backend's share of new flows relative to the others;
	// 0 counts as 1.
	Weight uint8
	// Ready backends take new flows. Serving backends that are
	// Terminating take new flows only while no backend is ready; every
	// configured backend keeps its existing flows.
	Ready, Serving, Terminating bool
	// Local is a pod attached to this host: traffic arriving over the
	// tunnel is balanced over local backends only.
	Local bool
}

// eligible returns the backends that take new flows: the ready ones, or,
// when none is ready, the serving ones that are terminating (so that a
// service whose pods are all being replaced keeps answering). The result
// is sorted by key, so the tables depend only on the set.
func eligible(bes []Backend) []Backend {
	var ready, fallback []Backend
	for _, b := range bes {
		switch {
		case b.Ready:
			ready = append(ready, b)
		case b.Serving && b.Terminating:
			fallback = append(fallback, b)
		}
	}
	out := ready
	if len(out) == 0 {
		out = fallback
	}
	slices.SortFunc(out, func(a, b Backend) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}

// maglevTable computes a Maglev lookup table (Eisenbud et al., NSDI 2016)
// of size m over backends: entry i is the index of a backend, or -1 when
// there are none. Each backend walks its own permutation of the entries,
// derived from its key alone, and the backends take turns claiming the
// next free entry of their permutation, weight turns per round. Because a
// backend's permutation does not depend on the others, adding or removing
// one of N backends moves about 1/N of the entries.
func maglevTable(backends []Backend, m int) []int32 {
	table := make([]int32, m)
	for i := range table {
		table[i] = -1
	}
	n := len(backends)
	if n == 0 {
		return table
	}
	// pos is where backend i's permutation stands: offset + k*skip mod m,
	// advanced by one addition instead of a multiply and a divide.
	pos := make([]int, n)
	skip := make([]int, n)
	for i, b := range backends {
		key := b.Addr.AsSlice()
		key = append(key, byte(b.Port>>8), byte(b.Port))
		pos[i] = int(hashWith(key, 0x5bd1e995) % uint64(m))
		skip[i] = int(hashWith(key, 0x27d4eb2f)%uint64(m-1)) + 1
	}
	filled := 0
	for filled < m {
		for i, b := range backends {
			w := int(b.Weight)
			if w == 0 {
				w = 1
			}
			for t := 0; t < w && filled < m; t++ {
				for {
					c := pos[i]
					if pos[i] += skip[i]; pos[i] >= m {
						pos[i] -= m
					}
					if table[c] < 0 {
						table[c] = int32(i)
						filled++
						break
					}
				}
			}
		}
	}
	return table
}

func hashWith(key []byte, seed uint32) uint64 {
	h := fnv.New64a()
	h.Write([]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	h.Write(key)
	return h.Sum64()
}
