package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/isthmus-net/isthmus/nos"
)

// receiveRoutes builds n VPNv4 /32s with RT 65000:1 from AS 65099.
func receiveRoutes(b testing.TB, n int) [][]byte {
	return vpnUpdates(b, vpnBatch{rd: "65099:1", rts: []string{"65000:1"}, nexthop: "192.0.2.99", label: 1000,
		first: netip.MustParseAddr("10.0.0.0"), count: n, peerAS: 65099})
}

// gobgpReceive measures GoBGP alone (same global settings as ours): from
// the first UPDATE written until GoBGP has processed the End-of-RIB that
// follows the last one. With watch, the Adj-RIB-In watch Isthmus registers
// is registered too, with a callback that does nothing: that is GoBGP's
// cost of reporting what it receives (it clones each path on its main loop
// and hands over one event per UPDATE).
func gobgpReceive(b *testing.B, msgs [][]byte, count, port int, watch bool) (time.Duration, float64) {
	const us, peer = "127.100.9.1", "127.100.9.2"
	fp := newFakePeer(b, peer, port, 65099)
	srv := server.NewBgpServer(server.LoggerOption(gobgpLogger(testLogger(b), nil), nil))
	go srv.Serve()
	defer srv.Stop()
	ctx := context.Background()
	g := globalSpec{as: 65000, routerID: netip.MustParseAddr("10.0.9.1"), listenPort: -1}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: globalToAPI(g)}); err != nil {
		b.Fatal(err)
	}
	eor := make(chan time.Time, 1)
	err := srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{OnPathEor: func(_ *apiutil.Path, at time.Time) {
		select {
		case eor <- time.Now():
		default:
		}
	}}, server.WatchEor(false))
	if err != nil {
		b.Fatal(err)
	}
	if watch {
		err := srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{OnPathUpdate: func([]*apiutil.Path, time.Time) {}},
			server.WatchUpdate(false, "", ""), server.WatchAdjInWithdraw())
		if err != nil {
			b.Fatal(err)
		}
	}
	n := neighborSpec{address: netip.MustParseAddr(peer), peerAS: 65099, enabled: true, localAddress: netip.MustParseAddr(us),
		remotePort: uint16(port), timers: timerSpec{connectRetry: 1, holdTime: 90, keepalive: 30}, families: familyVPNv4}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: neighborToAPI(n, false)}); err != nil {
		b.Fatal(err)
	}
	fp.accept()
	before := heapAfterGC()
	start := time.Now()
	fp.sendAll(msgs)
	end := <-eor
	perRoute := float64(int64(heapAfterGC())-int64(before)) / float64(count)
	fp.close()
	return end.Sub(start), perRoute
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// isthmusReceive measures Isthmus: from the first UPDATE written until
// every route is in the FIB, as a dataplane subscriber sees it. It also
// returns the heap held per route once they are all in.
func isthmusReceive(b *testing.B, msgs [][]byte, count, port int) (time.Duration, time.Duration, float64) {
	const us, peer = "127.100.9.3", "127.100.9.4"
	fp := newFakePeer(b, peer, port, 65099)
	n := startNodeB(b, Config{ListenPort: -1, PeerPort: uint16(port)})
	var got atomic.Int64
	done := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.core.FIB().Subscribe(ctx, func(batch []nos.RouteChange) {
		if got.Add(int64(len(batch))) >= int64(count) {
			select {
			case done <- time.Now():
			default:
			}
		}
	})
	n.commitB(b, hostConf{as: 65000, routerID: "10.0.9.3", endpoint: "192.0.2.93",
		neighbors: []nbrConf{{addr: peer, as: 65099, local: us}},
		vrfs:      []vrfConf{{name: "red", rd: "10.0.9.3:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.99.0.0/24"}}})
	fp.accept()
	before := heapAfterGC()
	start := time.Now()
	fp.sendAll(msgs)
	var end time.Time
	select {
	case end = <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d routes reached the FIB", got.Load(), count)
	}
	elapsed := end.Sub(start)
	n.bgp.mu.Lock()
	lag := max(0, end.Sub(n.bgp.eorAt)) // 0: the FIB was complete before the End-of-RIB
	if n.bgp.eorAt.IsZero() {
		lag = 0
	}
	n.bgp.mu.Unlock()
	perRoute := float64(int64(heapAfterGC())-int64(before)) / float64(count)
	n.shutdown()
	fp.close()
	n.core, n.bgp = nil, nil // the cleanup keeps n; let the routes go
	return elapsed, lag, perRoute
}

// BenchmarkReceiveVPNv4 receives 100k and 1M VPNv4 routes from a peer and
// reports GoBGP's own receive time, Isthmus's time until the routes are in
// the FIB, their ratio, and the heap per route. The two alternate for
// BGP_BENCH_ROUNDS rounds (default 3), after one untimed warm-up run, and
// the medians are reported, so that a noisy machine hits both alike. lag-s
// is how long after GoBGP inside Isthmus had processed the End-of-RIB the
// FIB was complete.
//
//	go test ./bgp -run '^$' -bench ReceiveVPNv4 -benchtime 1x
func BenchmarkReceiveVPNv4(b *testing.B) {
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("BGP_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for i, count := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("routes=%d", count), func(b *testing.B) {
			msgs := receiveRoutes(b, count)
			// An untimed run first: the process's first million routes pay
			// for growing its heap, which would count against whichever
			// comes first.
			gobgpReceive(b, msgs, count, 1800+100*i+99, false)
			for range b.N {
				var base, watched, ours, lag, baseMem, oursMem []float64
				for r := range rounds {
					port := 1800 + 100*i + 3*r
					t, m := gobgpReceive(b, msgs, count, port, false)
					base, baseMem = append(base, t.Seconds()), append(baseMem, m)
					t, _ = gobgpReceive(b, msgs, count, port+1, true)
					watched = append(watched, t.Seconds())
					t, l, m := isthmusReceive(b, msgs, count, port+2)
					ours, lag, oursMem = append(ours, t.Seconds()), append(lag, l.Seconds()), append(oursMem, m)
					b.Logf("round %d: gobgp %.2fs, gobgp+watch %.2fs, isthmus %.2fs (lag %.3fs), heap/route gobgp %.0f B, isthmus %.0f B",
						r, base[r], watched[r], ours[r], lag[r], baseMem[r], oursMem[r])
				}
				b.ReportMetric(median(base), "gobgp-s")
				b.ReportMetric(median(watched), "gobgp+watch-s")
				b.ReportMetric(median(ours), "isthmus-s")
				b.ReportMetric(median(ours)/median(base), "ratio")
				b.ReportMetric(median(lag), "lag-s")
				b.ReportMetric(median(baseMem), "gobgp-heap-B/route")
				b.ReportMetric(median(oursMem), "heap-B/route")
			}
		})
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
