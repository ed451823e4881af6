package nos

import (
	"context"
	"fmt"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// BenchmarkSetOneVRF measures one gNMI Set transaction that adds a VRF to a
// configuration that already has 1,000: copy, edit, validate, persist,
// diff and publish.
func BenchmarkSetOneVRF(b *testing.B) {
	ctx := context.Background()
	st, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	c, err := New(st)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	var ups []*gpb.Update
	for i := 0; i < 1000; i++ {
		ups = append(ups, vrfUpdate(b, fmt.Sprintf("v%d", i), i))
	}
	if _, err := c.Set(ctx, "bench", &gpb.SetRequest{Update: ups}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("new%d", i)
		if _, err := c.Set(ctx, "bench", &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(b, name, 5000+i)}}); err != nil {
			b.Fatal(err)
		}
	}
}

func vrfUpdate(tb testing.TB, name string, n int) *gpb.Update {
	js := fmt.Sprintf(`{"config":{"name":%q,"type":"L3VRF","route-distinguisher":"65000:%d","import-route-target":["65000:%d"],"export-route-target":["65000:%d"]},
"address-pools":{"address-pool":[{"prefix":"10.%d.%d.0/24","config":{"prefix":"10.%d.%d.0/24"}}]}}`, name, n, n, n, n/256, n%256, n/256, n%256)
	return jsonUpdate(tb, fmt.Sprintf("/network-instances/network-instance[name=%s]", name), js)
}
