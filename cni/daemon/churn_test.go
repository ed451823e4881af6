package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/gen"
)

// TestChurnKeepsRecordsTreeAndPoolsInStep runs concurrent ADDs and DELs
// over a small set of pods, then checks that what the daemon recorded, what
// the tree holds and what the pool counts agree, with no address twice.
func TestChurnKeepsRecordsTreeAndPoolsInStep(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/26")
	c := client(t, d)
	ctx := context.Background()
	const workers, rounds, pods = 8, 25, 30
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range rounds {
				id := fmt.Sprintf("p%d", r.IntN(pods))
				var err error
				if r.IntN(3) == 0 {
					_, err = c.Del(ctx, &api.DelRequest{AttachmentID: api.AttachmentID{ContainerID: id, IfName: "eth0"}})
				} else {
					_, err = c.Add(ctx, addReq("red", id))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	seen := map[netip.Prefix]string{}
	for i := range pods {
		id := fmt.Sprintf("p%d", i)
		got, err := c.Get(ctx, &api.GetRequest{AttachmentID: api.AttachmentID{ContainerID: id, IfName: "eth0"}})
		intf := d.Interface("ist" + id)
		if errors.Is(err, api.ErrNoAttachment) {
			if intf != nil {
				t.Fatalf("%s is in the tree but not recorded", id)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		a := got.Attachment.Address
		if intf.GetConfig().GetIpv4Address() != a.String() {
			t.Fatalf("%s: recorded %s, tree has %s", id, a, intf.GetConfig().GetIpv4Address())
		}
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both hold %s", other, id, a)
		}
		seen[a] = id
	}
	var allocated uint32
	_ = d.Core.Read(func(_, st *gen.Device) error {
		allocated = st.GetNetworkInstances().GetNetworkInstance("red").GetAddressPools().GetAddressPool("10.1.0.0/26").GetState().GetAllocated()
		return nil
	})
	if int(allocated) != len(seen) {
		t.Fatalf("pool state says %d allocated, %d pods hold addresses", allocated, len(seen))
	}
	t.Logf("%d pods attached after the churn", len(seen))
}
