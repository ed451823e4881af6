package daemon_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
)

// BenchmarkAttachAtScale measures a pod's ADD through the daemon's socket
// (VRF choice, address allocation and record in bbolt, the core's commit
// of the pod interface with validation, persistence and telemetry; no
// reconcilers, no namespaces) with 10 and with 10,000 VRFs configured,
// both sizes in one run. Every ADD goes to a different VRF; its DEL
// follows, untimed. It reports the median and the 99th percentile.
func BenchmarkAttachAtScale(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("vrfs=%d", n), func(b *testing.B) {
			d := testdaemon.Start(b, daemon.Config{})
			addVRFs(b, d, n)
			c, err := api.NewClient(d.Socket)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			runtime.GC() // the setup's garbage, before the timed ADDs
			took := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("b%d", i)
				req := addReq(fmt.Sprintf("v%d", i%n), id)
				start := time.Now()
				if _, err := c.Add(ctx, req); err != nil {
					b.Fatal(err)
				}
				took[i] = time.Since(start)
				b.StopTimer()
				if _, err := c.Del(ctx, &api.DelRequest{AttachmentID: req.AttachmentID}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
			b.ReportMetric(ms(took[(len(took)*99)/100]), "p99-ms")
		})
	}
}

// addVRFs configures n L3VRFs v0..v(n-1), each with a /24 pool, in one Set.
func addVRFs(b *testing.B, d *testdaemon.Daemon, n int) {
	b.Helper()
	req := &gpb.SetRequest{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("v%d", i)
		js := fmt.Sprintf(`{"config":{"name":%q,"type":"L3VRF","route-distinguisher":"65000:%d","import-route-target":["65000:%d"],"export-route-target":["65000:%d"]},
"address-pools":{"address-pool":[{"prefix":"10.%d.%d.0/24","config":{"prefix":"10.%d.%d.0/24"}}]}}`, name, i, i, i, i/256, i%256, i/256, i%256)
		p, err := ygot.StringToStructuredPath(fmt.Sprintf("/network-instances/network-instance[name=%s]", name))
		if err != nil {
			b.Fatal(err)
		}
		req.Update = append(req.Update, &gpb.Update{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}})
	}
	if _, err := d.Core.Set(context.Background(), "bench", req); err != nil {
		b.Fatal(err)
	}
}
