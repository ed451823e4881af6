package nos

import (
	"context"
	"fmt"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// BenchmarkCommitOneInterface measures one commit that adds a pod
// interface to an existing VRF, with 10 and with 10,000 VRFs configured,
// both sizes in one run: "entries" through CommitEntries (the CNI
// daemon's path: the edit names the interface), "whole" through Commit
// (its edit may change anything: a copy and a comparison of everything).
// The interfaces are removed again, untimed, when a case ends.
func BenchmarkCommitOneInterface(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("vrfs=%d", n), func(b *testing.B) {
			c := benchCore(b, n)
			for _, mode := range []string{"entries", "whole"} {
				b.Run(mode, func(b *testing.B) {
					ctx := context.Background()
					var names []string
					took := make([]time.Duration, b.N)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						vrf := i % n
						name := fmt.Sprintf("pod%d", benchSeq.Add(1))
						names = append(names, name)
						edit := func(d *gen.Device) error {
							cfg := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
							cfg.Name, cfg.Type = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD
							cfg.NetworkInstance = ygot.String(fmt.Sprintf("v%d", vrf))
							cfg.Ipv4Address = ygot.String(fmt.Sprintf("10.%d.%d.%d/32", vrf/256, vrf%256, 2+(i/n)%250))
							return nil
						}
						start := time.Now()
						var err error
						if mode == "entries" {
							_, err = c.CommitEntries(ctx, "bench", []*gpb.Path{InterfaceEntry(name)}, edit)
						} else {
							_, err = c.Commit(ctx, "bench", edit)
						}
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
			}
		})
	}
}
