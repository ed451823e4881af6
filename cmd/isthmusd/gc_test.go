package main

import "testing"

// TestGCPercent checks the collector's target: five times the live heap
// while that fits the budget, the budget itself beyond, and never less
// than Go's default of twice the live heap.
func TestGCPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		live, budget uint64
		want         int
	}{
		{live: 0, budget: 1024 * mb, want: 100},        // nothing measured yet
		{live: 137 * mb, budget: 1024 * mb, want: 400}, // 10,000 VRFs: capped at five times
		{live: 300 * mb, budget: 1024 * mb, want: 241}, // the heap may grow to the budget: (1,024 - 300) / 300
		{live: 512 * mb, budget: 1024 * mb, want: 100}, // the budget is twice the live heap
		{live: 900 * mb, budget: 1024 * mb, want: 100}, // over budget: never below Go's default
		{live: 10 * mb, budget: 64 * mb, want: 400},    // a small heap in a small budget
		{live: 20 * mb, budget: 64 * mb, want: 220},    // (64 - 20) / 20
	} {
		if got := gcPercent(tc.live, tc.budget); got != tc.want {
			t.Errorf("gcPercent(%d MB live, %d MB budget) = %d, want %d", tc.live/mb, tc.budget/mb, got, tc.want)
		}
	}
}
