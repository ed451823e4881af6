package bgp

import (
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/nos"
)

// BenchmarkAdvertiseToFRR hands 100k local routes (BGP_BENCH_ADVERTISE to
// change) to the speaker of a running reconciler, in one call as Apply
// does, and measures until FRR, in its own namespace, holds all of them.
// It bypasses the commit, whose validation and tree diff are the core's
// cost, not BGP's.
//
//	go test ./bgp -run '^$' -bench AdvertiseToFRR -benchtime 1x
func BenchmarkAdvertiseToFRR(b *testing.B) {
	if !isRoot() {
		b.Skip("needs root (network namespace, FRR)")
	}
	count := 100_000
	if v, err := strconv.Atoi(os.Getenv("BGP_BENCH_ADVERTISE")); err == nil && v > 0 {
		count = v
	}
	for range b.N {
		l := newLink(b)
		gw := startFRR(b, l, frrConf(l, ""))
		n := startNodeB(b, Config{ListenPort: -1})
		host := gatewayHost(l)
		host.vrfs = host.vrfs[:1]
		n.commit(host)
		eventually(b, 30*time.Second, "FRR holds our pods", func() bool { return gw.vpnCount(l.hostAddr) == 2 })

		label, _ := n.core.Labels().VRF("red")
		r1, _ := parseRD("10.0.0.1:1")
		t1, _ := parseRT("65000:1")
		routes := make([]exportRoute, 0, count)
		a := netip.MustParseAddr("172.30.0.0")
		for i := 0; i < count; i++ {
			routes = append(routes, exportRoute{rd: r1, prefix: netip.PrefixFrom(a, 32), label: label, rts: []rt{t1},
				encap: nos.EncapMPLSoUDP, nexthop: netip.MustParseAddr("192.0.2.1")})
			a = a.Next()
		}
		n.bgp.mu.Lock()
		sp := n.bgp.sp
		n.bgp.mu.Unlock()

		start := time.Now()
		if err := sp.advertise(routes, nil); err != nil {
			b.Fatal(err)
		}
		handed := time.Since(start)
		deadline := time.Now().Add(5 * time.Minute)
		for gw.vpnCount(l.hostAddr) < count+2 {
			if time.Now().After(deadline) {
				b.Fatalf("FRR holds %d of %d routes", gw.vpnCount(l.hostAddr), count+2)
			}
			time.Sleep(20 * time.Millisecond)
		}
		total := time.Since(start)
		b.Logf("%d routes: AddPath returned after %s, FRR held all after %s", count, handed, total)
		b.ReportMetric(handed.Seconds(), "addpath-s")
		b.ReportMetric(total.Seconds(), "frr-s")
	}
}
