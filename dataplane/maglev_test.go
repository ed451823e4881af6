package dataplane

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
)

func testBackends(n int) []Backend {
	var bes []Backend
	for i := 0; i < n; i++ {
		bes = append(bes, Backend{BackendKey: BackendKey{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i / 200), byte(2 + i%200)}), Port: 8080}, Ready: true})
	}
	return bes
}

func shares(table []int32, n int) []int {
	c := make([]int, n)
	for _, b := range table {
		c[b]++
	}
	return c
}

func TestMaglevSpreadsEvenly(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 10, 20} {
		table := maglevTable(testBackends(n), maglevSize)
		even := float64(maglevSize) / float64(n)
		for i, c := range shares(table, n) {
			if math.Abs(float64(c)-even) > 0.05*even+1 {
				t.Errorf("%d backends: backend %d has %d entries, even is %.1f", n, i, c, even)
			}
		}
	}
}

func TestMaglevWeights(t *testing.T) {
	bes := testBackends(3)
	bes[0].Weight, bes[1].Weight, bes[2].Weight = 1, 2, 3
	c := shares(maglevTable(bes, maglevSize), 3)
	for i, w := range []float64{1, 2, 3} {
		want := maglevSize * w / 6
		if math.Abs(float64(c[i])-want) > 0.05*want {
			t.Errorf("backend %d (weight %v): %d entries, want about %.0f", i, w, c[i], want)
		}
	}
}

// TestMaglevStability checks the property flows rely on: adding or
// removing one of N backends moves about 1/N of the table, mostly to or
// from that backend (Maglev trades a little extra movement for its even
// spread).
func TestMaglevStability(t *testing.T) {
	for _, n := range []int{3, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bes := testBackends(n + 1)
			before := maglevTable(bes[:n], maglevSize)
			after := maglevTable(bes, maglevSize) // one added at the end
			moved, toNew := 0, 0
			for i := range before {
				if before[i] != after[i] {
					moved++
					if int(after[i]) == n {
						toNew++
					}
				}
			}
			share := float64(maglevSize) / float64(n+1)
			if float64(moved) > 1.3*share {
				t.Errorf("adding one backend to %d moved %d entries, want about %.0f", n, moved, share)
			}
			if float64(toNew) < 0.75*float64(moved) {
				t.Errorf("of %d moved entries only %d went to the new backend", moved, toNew)
			}
			// Removing backend 0: its entries move, most others stay.
			removed := maglevTable(bes[1:n], maglevSize)
			kept := 0
			for i := range before {
				if before[i] != 0 && bes[before[i]].Addr == bes[1+removed[i]].Addr {
					kept++
				}
			}
			others := 0
			for _, b := range before {
				if b != 0 {
					others++
				}
			}
			if float64(kept) < 0.9*float64(others) {
				t.Errorf("removing one of %d backends kept %d of %d other entries", n, kept, others)
			}
		})
	}
}

func TestEligible(t *testing.T) {
	a := Backend{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.2"), Port: 80}, Ready: true, Serving: true}
	b := Backend{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.3"), Port: 80}, Serving: true, Terminating: true}
	c := Backend{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.4"), Port: 80}}
	for _, tc := range []struct {
		name string
		in   []Backend
		want []Backend
	}{
		{"ready only", []Backend{c, b, a}, []Backend{a}},
		{"serving terminating when none ready", []Backend{c, b}, []Backend{b}},
		{"neither", []Backend{c}, nil},
	} {
		got := eligible(tc.in)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMaglevEmpty(t *testing.T) {
	for _, e := range maglevTable(nil, maglevSize) {
		if e != -1 {
			t.Fatal("empty backend set gave a non-empty table")
		}
	}
}
