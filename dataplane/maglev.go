package dataplane

import "hash/fnv"

// maglevSize is the number of entries of a service's Maglev table
// (MAGLEV_M in bpf/flow.h): a prime, so every backend's permutation visits
// every entry, and far above the backends of a service, so that each gets
// a share within about 1% of its weight.
const maglevSize = 1021

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
