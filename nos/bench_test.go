package nos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// BenchmarkSetOneVRF measures one gNMI Set transaction that touches one
// VRF or one interface, with 10 and with 10,000 VRFs configured, in one run: edit,
// validate, persist (bbolt, fsync included), diff and publish. "add"
// adds a new VRF, "interface" a pod interface in an existing VRF,
// "change" gives an existing VRF a new import route target.
// Besides the mean it reports the median and the 99th percentile, and the
// bytes and allocations per Set (garbage that grows with the number of
// VRFs shows there first, TestSetGarbageIndependentOfVRFs).
func BenchmarkSetOneVRF(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("vrfs=%d", n), func(b *testing.B) {
			c := benchCore(b, n)
			b.Run("add", func(b *testing.B) {
				var names []string
				benchSets(b, c, func(int) *gpb.SetRequest {
					// A VRF never added before, also across -count runs.
					i := int(benchSeq.Add(1))
					names = append(names, fmt.Sprintf("new%d", i))
					return &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(b, names[len(names)-1], 20000+i%40000)}}
				})
				// Back to n VRFs for the next run, untimed.
				req := &gpb.SetRequest{}
				for _, name := range names {
					req.Delete = append(req.Delete, mustPath(b, fmt.Sprintf("/network-instances/network-instance[name=%s]", name)))
				}
				if _, err := c.Set(context.Background(), "bench", req); err != nil {
					b.Fatal(err)
				}
			})
			b.Run("interface", func(b *testing.B) {
				var names []string
				var k int
				benchSets(b, c, func(int) *gpb.SetRequest {
					// A pod interface in an existing VRF, at an address of
					// its pool no other pod has.
					vrf := k % n
					name := fmt.Sprintf("pod%d", benchSeq.Add(1))
					names = append(names, name)
					js := fmt.Sprintf(`{"name":%q,"type":"POD","network-instance":"v%d","ipv4-address":"10.%d.%d.%d/32"}`, name, vrf, vrf/256, vrf%256, 2+(k/n)%250)
					k++
					return &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(b, fmt.Sprintf("/interfaces/interface[name=%s]/config", name), js)}}
				})
				req := &gpb.SetRequest{}
				for _, name := range names {
					req.Delete = append(req.Delete, mustPath(b, fmt.Sprintf("/interfaces/interface[name=%s]", name)))
				}
				if _, err := c.Set(context.Background(), "bench", req); err != nil {
					b.Fatal(err)
				}
			})
			b.Run("commit", func(b *testing.B) {
				// The same pod interface through Commit (the CNI daemon's
				// path), whose edit may touch anything: it copies the
				// whole configuration and compares every entry.
				ctx := context.Background()
				var names []string
				took := make([]time.Duration, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					vrf := i % n
					name := fmt.Sprintf("pod%d", benchSeq.Add(1))
					names = append(names, name)
					start := time.Now()
					_, err := c.Commit(ctx, "bench", func(d *gen.Device) error {
						cfg := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
						cfg.Name, cfg.Type = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD
						cfg.NetworkInstance = ygot.String(fmt.Sprintf("v%d", vrf))
						cfg.Ipv4Address = ygot.String(fmt.Sprintf("10.%d.%d.%d/32", vrf/256, vrf%256, 2+(i/n)%250))
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					took[i] = time.Since(start)
				}
				b.StopTimer()
				reportLatency(b, took)
				req := &gpb.SetRequest{}
				for _, name := range names {
					req.Delete = append(req.Delete, mustPath(b, fmt.Sprintf("/interfaces/interface[name=%s]", name)))
				}
				if _, err := c.Set(ctx, "bench", req); err != nil {
					b.Fatal(err)
				}
			})
			b.Run("change", func(b *testing.B) {
				benchSets(b, c, func(int) *gpb.SetRequest {
					// A new import route target on an existing VRF each time.
					i := int(benchSeq.Add(1))
					path := fmt.Sprintf("/network-instances/network-instance[name=v%d]/config/import-route-target", i%n)
					return &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(b, path, fmt.Sprintf(`["65001:%d"]`, i))}}
				})
			})
		})
	}
}

// benchCore returns a started core holding n VRFs.
func benchCore(b *testing.B, n int) *Core {
	ctx := context.Background()
	st, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	// The commit log line is formatted as in the daemon, not printed.
	c, err := New(st, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	var ups []*gpb.Update
	for i := 0; i < n; i++ {
		ups = append(ups, vrfUpdate(b, fmt.Sprintf("v%d", i), i))
	}
	if _, err := c.Set(ctx, "bench", &gpb.SetRequest{Update: ups}); err != nil {
		b.Fatal(err)
	}
	// A few Sets before the timed ones: bbolt keeps the setup's revision
	// (2.9 MB at 10,000 VRFs) in the leaf new revisions are appended to,
	// and writes it again with each, until that leaf holds five
	// revisions and is split. The timed Sets see the state that follows.
	for i := 0; i < 5; i++ {
		path := fmt.Sprintf("/network-instances/network-instance[name=v%d]/config/description", i%n)
		if _, err := c.Set(ctx, "bench", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(b, path, fmt.Sprintf(`"warm %d"`, benchSeq.Add(1)))}}); err != nil {
			b.Fatal(err)
		}
	}
	// The setup's garbage is collected before the timed Sets, not
	// during the first of them.
	runtime.GC()
	return c
}

// benchSets runs b.N Sets built by req and reports the median and the
// 99th percentile latency in milliseconds, and the CPU time the process
// spent per Set (every goroutine: the Set, the garbage collector), which
// waits for the disk and for other processes do not inflate.
func benchSets(b *testing.B, c *Core, req func(i int) *gpb.SetRequest) {
	ctx := context.Background()
	reqs := make([]*gpb.SetRequest, b.N)
	for i := range reqs {
		reqs[i] = req(i)
	}
	took := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.Set(ctx, "bench", reqs[i]); err != nil {
			b.Fatal(err)
		}
		took[i] = time.Since(start)
	}
	cpu = processCPU() - cpu
	b.StopTimer()
	reportLatency(b, took)
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// reportLatency reports the median and the 99th percentile of took in
// milliseconds.
func reportLatency(b *testing.B, took []time.Duration) {
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
	b.ReportMetric(ms(took[(len(took)*99)/100]), "p99-ms")
}

// benchSeq numbers the Sets of the benchmarks, so that none repeats an
// earlier one (which would change nothing and make no revision).
var benchSeq atomic.Int64

func vrfUpdate(tb testing.TB, name string, n int) *gpb.Update {
	js := fmt.Sprintf(`{"config":{"name":%q,"type":"L3VRF","route-distinguisher":"65000:%d","import-route-target":["65000:%d"],"export-route-target":["65000:%d"]},
"address-pools":{"address-pool":[{"prefix":"10.%d.%d.0/24","config":{"prefix":"10.%d.%d.0/24"}}]}}`, name, n, n, n, n/256, n%256, n/256, n%256)
	return jsonUpdate(tb, fmt.Sprintf("/network-instances/network-instance[name=%s]", name), js)
}
