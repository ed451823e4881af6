package dataplane

import "fmt"

// wordRange is a run of pol_words: the non-zero words of one classifier
// entry's bitmap.
type wordRange struct {
	off, n uint32
}

// wordSpace hands out runs of pol_words (policy.h): one bit per word
// says whether some classifier entry stores a word there. A run is
// searched for from where the last one ended (next fit), so runs written
// together lie together, and a freed run is reused once the search comes
// round to it.
type wordSpace struct {
	used []uint64
	size uint32
	next uint32
	free uint32
}

func newWordSpace(size uint32) *wordSpace {
	return &wordSpace{used: make([]uint64, (size+63)/64), size: size, free: size}
}

func (s *wordSpace) isUsed(i uint32) bool { return s.used[i/64]&(1<<(i%64)) != 0 }

// mark sets r's words in use or free (either way whatever they were).
func (s *wordSpace) mark(r wordRange, used bool) {
	for i := r.off; i < r.off+r.n && i < s.size; i++ {
		if s.isUsed(i) == used {
			continue
		}
		if used {
			s.used[i/64] |= 1 << (i % 64)
			s.free--
		} else {
			s.used[i/64] &^= 1 << (i % 64)
			s.free++
		}
	}
}

// alloc returns a run of n free words, now in use.
func (s *wordSpace) alloc(n uint32) (wordRange, error) {
	if n == 0 {
		return wordRange{}, nil
	}
	if n > s.free {
		return wordRange{}, fmt.Errorf("classifier words: %d needed, %d of %d free", n, s.free, s.size)
	}
	// At most one pass round the space, from next.
	start, run := s.next, uint32(0)
	for scanned := uint32(0); scanned < s.size+n; scanned++ {
		i := (s.next + scanned) % s.size
		if i == 0 {
			run = 0 // a run does not wrap
		}
		if i%64 == 0 && s.used[i/64] == ^uint64(0) && scanned+64 <= s.size+n {
			run = 0
			scanned += 63
			continue
		}
		if s.isUsed(i) {
			run = 0
			continue
		}
		if run == 0 {
			start = i
		}
		if run++; run == n {
			r := wordRange{off: start, n: n}
			s.mark(r, true)
			s.next = (start + n) % s.size
			return r, nil
		}
	}
	return wordRange{}, fmt.Errorf("classifier words: no run of %d free in %d of %d free words (fragmented)", n, s.free, s.size)
}
