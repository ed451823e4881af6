package dataplane

import "testing"

// TestWordSpace: runs are handed out next fit, never overlap, come back
// when freed, and a request no free run fits is refused with the counts.
func TestWordSpace(t *testing.T) {
	s := newWordSpace(256)
	a, err := s.alloc(100)
	must(t, err)
	b, err := s.alloc(100)
	must(t, err)
	if a.off != 0 || b.off != 100 || s.free != 56 {
		t.Fatalf("runs %+v %+v, %d free; want 0 and 100, 56 free", a, b, s.free)
	}
	if _, err := s.alloc(57); err == nil {
		t.Fatal("57 words out of 56 free: no error")
	}
	s.mark(a, false)
	// 156 free, as 100 at 0 and 56 at 200: 120 fits in neither.
	if _, err := s.alloc(120); err == nil {
		t.Fatal("a run of 120 in runs of 100 and 56: no error")
	}
	c, err := s.alloc(56)
	must(t, err)
	if c.off != 200 {
		t.Errorf("next fit after 200: run at %d", c.off)
	}
	d, err := s.alloc(64)
	must(t, err)
	if d.off != 0 {
		t.Errorf("the freed run: at %d, want 0", d.off)
	}
	s.mark(d, false)
	s.mark(d, false) // freeing twice changes nothing
	if s.free != 100 {
		t.Errorf("%d free, want 100", s.free)
	}
	if r, err := s.alloc(0); err != nil || r.n != 0 {
		t.Errorf("no word: %+v, %v", r, err)
	}
}

// TestPolRefRoundTrip: a bitmap's reference and stored words give the
// bitmap back, word k found at its base plus the summary bits below it.
func TestPolRefRoundTrip(t *testing.T) {
	var b polBits
	for _, r := range []int{0, 63, 64, 4095, 4096, 9999, 16383} {
		b.set(r)
	}
	if got := b.stored(); got != 6 { // words 0, 1, 63, 64, 156, 255
		t.Fatalf("stored %d words, want 6", got)
	}
	const off = 1000
	ref, words := b.ref(off, nil)
	if len(words) != 6 || ref.words() != (wordRange{off: off, n: 6}) {
		t.Fatalf("words %v, range %+v", words, ref.words())
	}
	back, err := ref.bits(func(i uint32) (uint64, error) { return words[i-off], nil })
	must(t, err)
	if back != b {
		t.Error("the bitmap read back differs")
	}
}
