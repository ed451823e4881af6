package nos

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestSetGarbageIndependentOfVRFs checks that a Set that changes one VRF,
// adds one or adds a pod interface allocates about as much with
// manyVRFs VRFs configured as with 10: nothing of it, such as a copy of
// the network-instance list's map, grows with the list. It counts bytes
// (the least of 15 Sets of each kind: the process's other goroutines only
// add to a Set's count, and a copy that grows with the list would be in
// every Set), not time.
func TestSetGarbageIndependentOfVRFs(t *testing.T) {
	const manyVRFs = 2000 // enough for a copy of the map to stand out (about 60 kB), small enough to build in a second
	kinds := []string{"change", "add", "interface"}
	perSet := func(n int) map[string]uint64 {
		ctx := context.Background()
		c := newTestCore(t, t.TempDir())
		ups := make([]*gpb.Update, 0, n)
		for i := 0; i < n; i++ {
			ups = append(ups, vrfUpdate(t, fmt.Sprintf("v%d", i), i))
		}
		if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: ups}); err != nil {
			t.Fatal(err)
		}
		out := map[string]uint64{}
		for _, kind := range kinds {
			var sizes []uint64
			for i := 0; i < 15; i++ {
				var req *gpb.SetRequest
				switch kind {
				case "change":
					req = &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t,
						fmt.Sprintf("/network-instances/network-instance[name=v%d]/config/import-route-target", i%n), fmt.Sprintf(`["65001:%d"]`, i))}}
				case "add":
					req = &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, fmt.Sprintf("new%d", i), 20000+i)}}
				case "interface":
					name := fmt.Sprintf("pod%d", i)
					req = &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, fmt.Sprintf("/interfaces/interface[name=%s]/config", name),
						fmt.Sprintf(`{"name":%q,"type":"POD","network-instance":"v%d","ipv4-address":"10.0.%d.%d/32"}`, name, 0, 0, 2+i))}}
				}
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				if _, err := c.Set(ctx, "t", req); err != nil {
					t.Fatal(err)
				}
				runtime.ReadMemStats(&after)
				sizes = append(sizes, after.TotalAlloc-before.TotalAlloc)
			}
			sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
			out[kind] = sizes[0]
		}
		// What the Sets left running is what the store holds.
		checkRunningIsStored(t, c)
		return out
	}
	small, large := perSet(10), perSet(manyVRFs)
	for _, kind := range kinds {
		// The bound leaves room for bbolt's deeper tree and for noise.
		// Under -race the least of 15 Sets still varies by 30-60 kB
		// (sync.Pool drops a share of what is put back), so the race lane
		// allows more; the ordinary lane holds the bound that a copy of
		// the map would cross.
		margin := uint64(32 << 10)
		if raceDetector {
			margin = 128 << 10
		}
		if bound := small[kind] + margin; large[kind] > bound {
			t.Errorf("a %s Set allocates %d bytes with %d VRFs, %d with 10 (bound %d)", kind, large[kind], manyVRFs, small[kind], bound)
		} else {
			t.Logf("a %s Set allocates %d bytes with %d VRFs, %d with 10", kind, large[kind], manyVRFs, small[kind])
		}
	}
}

// checkRunningIsStored compares the running configuration with the head
// revision read back from the store.
func checkRunningIsStored(t *testing.T, c *Core) {
	t.Helper()
	rec, err := c.store.head()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := decodeConfig(rec.Config)
	if err != nil {
		t.Fatal(err)
	}
	var running []byte
	c.Read(func(cfg, _ *gen.Device) error {
		running, err = encodeConfig(cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := encodeConfig(stored)
	if err != nil {
		t.Fatal(err)
	}
	if string(running) != string(want) {
		t.Fatal("the running configuration differs from the head revision in the store")
	}
}

// TestSetReuseKeepsConfigurationsApart runs Sets that take spare list
// maps (cow_reuse.go) among Sets that fail, change nothing, replace the
// whole list, and commits that copy the configuration, and checks after
// each that the running configuration is what the store holds and that
// the configuration running before it was left as it was.
func TestSetReuseKeepsConfigurationsApart(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	ni := func(name, leaf, js string) *gpb.Update {
		return jsonUpdate(t, fmt.Sprintf("/network-instances/network-instance[name=%s]/config/%s", name, leaf), js)
	}
	steps := []struct {
		req  *gpb.SetRequest
		fail bool
	}{
		{req: &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, "a", 1), vrfUpdate(t, "b", 2), vrfUpdate(t, "c", 3)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("a", "description", `"one"`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("b", "description", `"two"`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("c", "description", `"three"`), ni("a", "description", `"four"`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("b", "description", `"lost"`), ni("a", "route-distinguisher", `"not an rd"`)}}, fail: true},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("b", "description", `"five"`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("b", "description", `"five"`)}}}, // changes nothing
		{req: &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/network-instances/network-instance[name=c]")}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, "d", 4)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, "e", 5), ni("d", "description", `"six"`)}}},
		{req: &gpb.SetRequest{Replace: []*gpb.Update{jsonUpdate(t, "/network-instances",
			`{"network-instance":[{"name":"a","config":{"name":"a","type":"L3VRF","route-distinguisher":"65000:1"}},{"name":"f","config":{"name":"f","type":"L3VRF","route-distinguisher":"65000:6"}}]}`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("f", "description", `"seven"`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("a", "description", `"eight"`)}}},
		{req: nil}, // a Commit, which copies the whole configuration
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("f", "description", `"nine"`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{ni("a", "description", `"ten"`)}}},
		{req: &gpb.SetRequest{Update: []*gpb.Update{vrfUpdate(t, "g", 7)}}},
	}
	for i, s := range steps {
		var prev *gen.Device
		c.Read(func(cfg, _ *gen.Device) error { prev = cfg; return nil })
		prevJSON, err := encodeConfig(prev)
		if err != nil {
			t.Fatal(err)
		}
		if s.req == nil {
			_, err = c.Commit(ctx, "t", func(d *gen.Device) error {
				d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("a").GetOrCreateConfig().Description = ygot.String("by commit")
				return nil
			})
		} else {
			_, err = c.Set(ctx, "t", s.req)
		}
		if (err != nil) != s.fail {
			t.Fatalf("step %d: error %v, want failure %v", i, err, s.fail)
		}
		if got, _ := encodeConfig(prev); string(got) != string(prevJSON) {
			t.Fatalf("step %d changed the configuration that was running before it", i)
		}
		checkRunningIsStored(t, c)
	}
	var names []string
	c.Read(func(cfg, _ *gen.Device) error {
		for name := range NetworkInstances(cfg) {
			names = append(names, name+"="+NetworkInstances(cfg)[name].GetConfig().GetDescription())
		}
		return nil
	})
	sort.Strings(names)
	if got, want := fmt.Sprint(names), "[a=ten f=nine g=]"; got != want {
		t.Errorf("network instances %s, want %s", got, want)
	}
}
