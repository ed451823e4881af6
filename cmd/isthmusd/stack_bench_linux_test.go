package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/dataplane"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
	"github.com/isthmus-net/isthmus/server"
)

// BenchmarkStackSetOneVRF measures a one-VRF gNMI Set through what
// isthmusd runs: the gNMI server's Set, the core, and the node's
// reconcilers as isthmusd builds them (reconcilers: the dataplane with
// its eBPF maps in the kernel, GoBGP, the CNI namespace state), with 10
// and with 10,000 L3VRFs configured, both sizes in one run. BGP is
// enabled with one passive neighbor that never connects, so GoBGP runs
// and takes the exports but no session changes the timings. Run as root
// the dataplane loads for real in a network namespace of the
// benchmark's own; otherwise the stack runs without it (BGP only) and
// says so. "add" adds a VRF never seen before, "change" gives an
// existing VRF a new import route target. It reports the median and the
// 99th percentile, and the process's CPU time per Set.
func BenchmarkStackSetOneVRF(b *testing.B) {
	withDataplane := os.Geteuid() == 0
	if !withDataplane {
		b.Log("not root: the stack runs without the dataplane")
	}
	type size struct {
		stack string // "full": with the dataplane; "bgp": without it
		vrfs  int
	}
	sizes := []size{{"bgp", 10}, {"bgp", 10000}}
	if withDataplane {
		sizes = append([]size{{"full", 10}, {"full", 10000}}, sizes...)
	}
	for _, sz := range sizes {
		n := sz.vrfs
		b.Run(fmt.Sprintf("stack=%s/vrfs=%d", sz.stack, n), func(b *testing.B) {
			st := newStack(b, n, sz.stack == "full")
			b.Run("add", func(b *testing.B) {
				var names []string
				st.sets(b, func() *gpb.SetRequest {
					i := int(stackSeq.Add(1))
					names = append(names, fmt.Sprintf("new%d", i))
					return &gpb.SetRequest{Update: []*gpb.Update{stackVRF(b, names[len(names)-1], 20000+i%40000)}}
				})
				req := &gpb.SetRequest{}
				for _, name := range names {
					req.Delete = append(req.Delete, stackPath(b, fmt.Sprintf("/network-instances/network-instance[name=%s]", name)))
				}
				if _, err := st.srv.Set(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			})
			b.Run("change", func(b *testing.B) {
				st.sets(b, func() *gpb.SetRequest {
					i := int(stackSeq.Add(1))
					p := fmt.Sprintf("/network-instances/network-instance[name=v%d]/config/import-route-target", i%n)
					return &gpb.SetRequest{Update: []*gpb.Update{stackJSON(b, p, fmt.Sprintf(`["65001:%d"]`, i))}}
				})
			})
		})
	}
}

// timedReconciler adds the time its reconciler spends in Validate and
// Apply to took (nanoseconds).
type timedReconciler struct {
	nos.Reconciler
	took atomic.Int64
}

func (t *timedReconciler) Validate(d *gen.Device) error {
	start := time.Now()
	defer func() { t.took.Add(int64(time.Since(start))) }()
	return t.Reconciler.Validate(d)
}

func (t *timedReconciler) Apply(ctx context.Context, old, intended *gen.Device) error {
	start := time.Now()
	defer func() { t.took.Add(int64(time.Since(start))) }()
	return t.Reconciler.Apply(ctx, old, intended)
}

// ValidateDelta times the reconciler's ValidateDelta, or its Validate
// when it works from the whole configuration only.
func (t *timedReconciler) ValidateDelta(d *gen.Device, ch nos.Delta) error {
	dr, ok := t.Reconciler.(nos.DeltaReconciler)
	if !ok {
		return t.Validate(d)
	}
	start := time.Now()
	defer func() { t.took.Add(int64(time.Since(start))) }()
	return dr.ValidateDelta(d, ch)
}

// ApplyDelta times the reconciler's ApplyDelta, or its Apply when it
// works from the whole configuration only.
func (t *timedReconciler) ApplyDelta(ctx context.Context, old, intended *gen.Device, ch nos.Delta) error {
	dr, ok := t.Reconciler.(nos.DeltaReconciler)
	if !ok {
		return t.Apply(ctx, old, intended)
	}
	start := time.Now()
	defer func() { t.took.Add(int64(time.Since(start))) }()
	return dr.ApplyDelta(ctx, old, intended, ch)
}

// stack is a gNMI server on a core with isthmusd's reconcilers, each
// timed.
type stack struct {
	srv  *server.Server
	recs []*timedReconciler
}

// stackSeq numbers the Sets so that none repeats an earlier one.
var stackSeq atomic.Int64

// newStack starts a core with isthmusd's node reconcilers (in a
// network namespace of its own when the dataplane runs) holding n VRFs,
// BGP and the tunnel, and a gNMI server on it.
func newStack(b *testing.B, n int, withDataplane bool) *stack {
	b.Helper()
	log := slog.New(slog.DiscardHandler)
	cfg := defaultConfig()
	cfg.DataDir = b.TempDir()
	cfg.BGP.ListenPort = -1
	cfg.Dataplane.BPFFS = b.TempDir()
	cfg.Dataplane.StateInterval = time.Hour
	all := reconcilers(cfg, log)
	if !withDataplane {
		all = all[1:] // reconcilers puts the dataplane first
	} else {
		pins := cfg.Dataplane.BPFFS
		b.Cleanup(func() {
			if d, err := dataplane.Open(dataplane.Config{BPFFS: pins, Logger: log}); err == nil {
				d.Destroy()
			}
			unix.Unmount(pins, unix.MNT_DETACH)
		})
	}
	store, err := nos.OpenStore(cfg.DataDir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	st := &stack{}
	var recs []nos.Reconciler
	for _, r := range all {
		tr := &timedReconciler{Reconciler: r}
		st.recs = append(st.recs, tr)
		recs = append(recs, tr)
	}
	core, err := nos.New(store, nos.WithLogger(log), nos.WithReconcilers(recs...))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(func() {
		cancel()
		if err := core.Stop(context.Background()); err != nil {
			b.Errorf("stop core: %v", err)
		}
	})
	started := make(chan error, 1)
	go func() {
		if withDataplane {
			// The dataplane's netlink handle and loops stay in a namespace
			// of their own; the thread goes with this goroutine.
			runtime.LockOSThread()
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				started <- fmt.Errorf("unshare netns: %w", err)
				return
			}
		}
		started <- core.Start(ctx)
	}()
	if err := <-started; err != nil {
		b.Fatal(err)
	}
	// As isthmusd: the CNI API's server opens its address buckets (its
	// socket is not served here).
	if _, err := daemon.New(cfg.CNI, core, store.DB(), daemon.WithLogger(log)); err != nil {
		b.Fatal(err)
	}
	st.srv = server.New(core, server.WithLogger(log))
	base := &gpb.SetRequest{Update: []*gpb.Update{
		stackJSON(b, "/tunnel/config", `{"source-address":"192.0.2.1"}`),
		stackJSON(b, "/network-instances/network-instance[name=default]", `{"config":{"name":"default","type":"DEFAULT"},
"protocols":{"protocol":[{"identifier":"BGP","name":"bgp","config":{"identifier":"BGP","name":"bgp"},
"bgp":{"global":{"config":{"as":65000,"router-id":"10.0.0.1"}},
"neighbors":{"neighbor":[{"neighbor-address":"192.0.2.9","config":{"neighbor-address":"192.0.2.9","peer-as":65000},"transport":{"config":{"passive-mode":true}}}]}}}]}}`),
	}}
	for i := 0; i < n; i++ {
		base.Update = append(base.Update, stackVRF(b, fmt.Sprintf("v%d", i), i))
	}
	if _, err := st.srv.Set(context.Background(), base); err != nil {
		b.Fatal(err)
	}
	runtime.GC() // the setup's garbage, before the timed Sets
	return st
}

// sets runs b.N Sets built by req and reports the median and the 99th
// percentile in milliseconds, and the median time of each reconciler
// (Validate and Apply together) in milliseconds.
func (st *stack) sets(b *testing.B, req func() *gpb.SetRequest) {
	ctx := context.Background()
	reqs := make([]*gpb.SetRequest, b.N)
	for i := range reqs {
		reqs[i] = req()
	}
	took := make([]time.Duration, b.N)
	recTook := make([][]time.Duration, len(st.recs))
	for i := range recTook {
		recTook[i] = make([]time.Duration, b.N)
	}
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range st.recs {
			r.took.Store(0)
		}
		start := time.Now()
		if _, err := st.srv.Set(ctx, reqs[i]); err != nil {
			b.Fatal(err)
		}
		took[i] = time.Since(start)
		for j, r := range st.recs {
			recTook[j][i] = time.Duration(r.took.Load())
		}
	}
	b.StopTimer()
	// The CPU the process spent (every goroutine: the Set, the
	// reconcilers' loops it wakes, the garbage collector) per Set: what
	// the Sets cost, less the waits for the disk and for other processes
	// that set the timings on a busy machine.
	b.ReportMetric(ms(processCPU(b)-cpu0)/float64(b.N), "cpu-ms/op")
	b.ReportMetric(ms(percentile(took, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(took, 99)), "p99-ms")
	for j, r := range st.recs {
		b.ReportMetric(ms(percentile(recTook[j], 50)), "p50-"+r.ID()+"-ms")
	}
}

// processCPU returns the user and system CPU time of the process.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(d []time.Duration, p int) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[(len(d)*p)/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func stackPath(b *testing.B, s string) *gpb.Path {
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func stackJSON(b *testing.B, path, js string) *gpb.Update {
	return &gpb.Update{Path: stackPath(b, path), Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}
}

// stackVRF is an L3VRF with its RD, route targets and a /24 pool.
func stackVRF(b *testing.B, name string, n int) *gpb.Update {
	js := fmt.Sprintf(`{"config":{"name":%q,"type":"L3VRF","route-distinguisher":"65000:%d","import-route-target":["65000:%d"],"export-route-target":["65000:%d"]},
"address-pools":{"address-pool":[{"prefix":"10.%d.%d.0/24","config":{"prefix":"10.%d.%d.0/24"}}]}}`, name, n, n, n, n/256, n%256, n/256, n%256)
	return stackJSON(b, fmt.Sprintf("/network-instances/network-instance[name=%s]", name), js)
}
