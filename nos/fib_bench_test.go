package nos

import (
	"context"
	"net/netip"
	"testing"
)

// BenchmarkFIBUpdate1M feeds 1M /32 routes in batches of 10,000 to a FIB
// with one subscriber, as BGP import does, until the subscriber has seen
// them all.
func BenchmarkFIBUpdate1M(b *testing.B) {
	const n, batch = 1 << 20, 10000
	nh := []NextHop{{Endpoint: netip.MustParseAddr("192.0.2.1"), Label: 100000, Encap: EncapMPLSoUDP}}
	changes := make([]RouteChange, n)
	for i := range changes {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		changes[i] = RouteChange{Route: Route{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(a, 32)}, NextHops: nh}}
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f := NewFIB()
		ctx, cancel := context.WithCancel(context.Background())
		seen := make(chan int, 1024)
		go f.Subscribe(ctx, func(c []RouteChange) { seen <- len(c) })
		for off := 0; off < n; off += batch {
			f.Update(changes[off:min(off+batch, n)])
		}
		for got := 0; got < n; {
			got += <-seen
		}
		cancel()
	}
}
