package daemon_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
)

// BenchmarkServerAdd measures the daemon's share of an ADD (allocation,
// record and core commit, over the unix socket) on a node that already has
// a number of pods; no namespaces are involved.
func BenchmarkServerAdd(b *testing.B) {
	for _, existing := range []int{0, 100} {
		b.Run(fmt.Sprintf("pods=%d", existing), func(b *testing.B) {
			d := testdaemon.Start(b, daemon.Config{})
			d.AddVRF("red", "65000:1", "10.128.0.0/16")
			c, err := api.NewClient(d.Socket)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			for i := range existing {
				if _, err := c.Add(ctx, addReq("red", fmt.Sprintf("e%d", i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("n%d", i)
				if _, err := c.Add(ctx, addReq("red", id)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, err := c.Del(ctx, &api.DelRequest{AttachmentID: api.AttachmentID{ContainerID: id, IfName: "eth0"}}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
