package bgp

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// fibRecorder records every change the FIB publishes after its snapshot.
type fibRecorder struct {
	mu      sync.Mutex // guards changes, primed
	changes []nos.RouteChange
	primed  bool
}

func recordFIB(t *testing.T, fib *nos.FIB) *fibRecorder {
	rec := &fibRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go fib.Subscribe(ctx, func(batch []nos.RouteChange) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if !rec.primed {
			rec.primed = true // the snapshot
			return
		}
		rec.changes = append(rec.changes, batch...)
	})
	eventually(t, 5*time.Second, "fib snapshot", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.primed })
	return rec
}

func (r *fibRecorder) flaps(key nos.RouteKey) []nos.RouteChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []nos.RouteChange
	for _, c := range r.changes {
		if c.RouteKey == key {
			out = append(out, c)
		}
	}
	return out
}

// TestGracefulRestart: restarting our speaker does not make FRR drop our
// routes, and FRR's route never leaves (or changes in) our FIB; then FRR
// restarts and our FIB keeps its route as well, while a route FRR no
// longer originates after its restart goes once FRR has sent End-of-RIB.
func TestGracefulRestart(t *testing.T) {
	needRoot(t)
	l := newLink(t)
	const dropped = `
 address-family ipv4 vpn
  network 172.16.8.0/24 rd 65001:8 label 2003 route-map SET-RT
 exit-address-family`
	gw := startFRR(t, l, frrConf(l, dropped))
	n := startNode(t, Config{ListenPort: -1, StateDir: t.TempDir()})
	host := gatewayHost(l)
	n.commit(host)
	key := nos.RouteKey{VRF: "red", Prefix: mustPrefix("172.16.5.0/24")}
	eventually(t, 30*time.Second, "FRR holds our pods", func() bool { return gw.vpnCount(l.hostAddr) == 2 })
	eventually(t, 30*time.Second, "FRR's route in red", func() bool { _, ok := n.core.FIB().Lookup(key); return ok })
	droppedKey := nos.RouteKey{VRF: "red", Prefix: mustPrefix("172.16.8.0/24")}
	eventually(t, 30*time.Second, "FRR's second route in red", func() bool { _, ok := n.core.FIB().Lookup(droppedKey); return ok })
	before, _ := n.core.FIB().Lookup(key)
	label, _ := n.core.Labels().VRF("red")

	// Watch FRR's view of our routes while we restart.
	watchFRR := func(what string) (stop func() int) {
		done := make(chan struct{})
		missing := make(chan int, 1)
		go func() {
			miss := 0
			for {
				select {
				case <-done:
					missing <- miss
					return
				case <-time.After(100 * time.Millisecond):
				}
				if len(gw.vpnRoute("10.0.0.1:1", "10.1.0.5/32")) == 0 {
					miss++
				}
			}
		}()
		return func() int { close(done); return <-missing }
	}
	rec := recordFIB(t, n.core.FIB())
	stop := watchFRR("our restart")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.bgp.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the daemon is down
	if p := gw.vpnRoute("10.0.0.1:1", "10.1.0.5/32"); len(p) != 1 || !p[0].Stale {
		t.Errorf("while we are down FRR should hold our route as stale, has %+v", p)
	}
	if err := n.bgp.Start(context.Background(), n.core); err != nil {
		t.Fatal(err)
	}
	if err := n.bgp.Apply(ctx, nil, n.core.Config()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "FRR refreshed our route", func() bool {
		p := gw.vpnRoute("10.0.0.1:1", "10.1.0.5/32")
		return len(p) == 1 && !p[0].Stale
	})
	if miss := stop(); miss > 0 {
		t.Errorf("FRR lost our route %d times during our restart\n%s", miss, gw.log())
	}
	if p := gw.vpnRoute("10.0.0.1:1", "10.1.0.5/32"); p[0].RemoteLabel != int(label) {
		t.Errorf("label after restart %d, want %d", p[0].RemoteLabel, label)
	}
	eventually(t, 30*time.Second, "our initial sync", func() bool { n.bgp.mu.Lock(); defer n.bgp.mu.Unlock(); return n.bgp.synced })
	if f := rec.flaps(key); len(f) > 0 {
		t.Errorf("FIB changed for %v during our restart: %+v", key, f)
	}
	if after, ok := n.core.FIB().Lookup(key); !ok || after[0] != before[0] {
		t.Errorf("route after restart %v, before %v", after, before)
	}

	// FRR restarts, without its second route: we keep both routes while
	// it is down (helper mode), then the second goes after its End-of-RIB.
	gw.stop()
	gw.setConf(frrConf(l, ""))
	time.Sleep(2 * time.Second)
	for _, k := range []nos.RouteKey{key, droppedKey} {
		if _, ok := n.core.FIB().Lookup(k); !ok {
			t.Errorf("FRR's route %v left the FIB while FRR restarts", k.Prefix)
		}
	}
	gw.start()
	eventually(t, 30*time.Second, "FRR back with our routes", func() bool { return gw.vpnCount(l.hostAddr) == 2 })
	eventually(t, 30*time.Second, "the route FRR no longer has leaves the FIB", func() bool {
		_, ok := n.core.FIB().Lookup(droppedKey)
		return !ok
	})
	time.Sleep(2 * time.Second)
	if f := rec.flaps(key); len(f) > 0 {
		t.Errorf("FIB changed for %v during FRR's restart: %+v", key, f)
	}
	if _, ok := n.core.FIB().Lookup(key); !ok {
		t.Errorf("FRR's route %v is gone after FRR's restart", key.Prefix)
	}
}

// TestStaleRoutesTime: when FRR goes away without a word (graceful
// restart: it asked for 30 s), we keep its route only for our own
// stale-routes-time, then remove it; when FRR is back, so is the route.
func TestStaleRoutesTime(t *testing.T) {
	needRoot(t)
	l := newLink(t)
	gw := startFRR(t, l, frrConf(l, ""))
	n := startNode(t, Config{ListenPort: -1, StateDir: t.TempDir()})
	host := gatewayHost(l)
	host.staleTime = 3
	n.commit(host)
	key := nos.RouteKey{VRF: "red", Prefix: mustPrefix("172.16.5.0/24")}
	eventually(t, 30*time.Second, "FRR's route in red", func() bool { _, ok := n.core.FIB().Lookup(key); return ok })

	gw.stop()
	down := time.Now()
	eventually(t, 15*time.Second, "FRR's session down", func() bool {
		return n.neighborState(l.peerAddr).state != gen.IsthmusTypes_SessionState_ESTABLISHED
	})
	if _, ok := n.core.FIB().Lookup(key); !ok {
		t.Fatalf("FRR's route left the FIB as soon as its session went down")
	}
	eventually(t, 15*time.Second, "FRR's stale route removed", func() bool { _, ok := n.core.FIB().Lookup(key); return !ok })
	if held := time.Since(down); held > 15*time.Second {
		t.Errorf("stale route held %v; stale-routes-time is 3 s after the session went down (hold time 9 s)", held)
	}
	gw.start()
	eventually(t, 30*time.Second, "FRR's route back in red", func() bool { _, ok := n.core.FIB().Lookup(key); return ok })
}
