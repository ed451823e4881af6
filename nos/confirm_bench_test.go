package nos

import (
	"context"
	"fmt"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// BenchmarkConfirmedSetOneVRF: a confirmed commit of one VRF's
// description and its cancellation (the rollback), with 10 and 10,000
// VRFs configured; one op is both. Bytes and allocations per op show
// that neither copies, encodes nor walks the untouched VRFs.
func BenchmarkConfirmedSetOneVRF(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("vrfs=%d", n), func(b *testing.B) {
			c := benchCore(b, n)
			ctx := context.Background()
			reqs := make([]*gpb.SetRequest, b.N)
			for i := range reqs {
				reqs[i] = &gpb.SetRequest{Update: []*gpb.Update{descrUpdate(b, fmt.Sprintf("v%d", i%n), fmt.Sprint(i))}}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.SetConfirmed(ctx, "bench", "c", time.Hour, reqs[i]); err != nil {
					b.Fatal(err)
				}
				if _, err := c.CancelCommit(ctx, "bench", "c"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
