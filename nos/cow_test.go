package nos

import (
	"context"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/gen"
)

// TestSetSharesUntouchedEntries checks that a Set copies only what it
// edits: the entries it does not name are the very same objects in the
// new running configuration, and the previous running configuration
// (which reconcilers and readers may still hold) is left as it was, also
// by a Set that fails half-way.
func TestSetSharesUntouchedEntries(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	base := &gpb.SetRequest{Update: []*gpb.Update{
		vrfUpdate(t, "a", 1), vrfUpdate(t, "b", 2),
		jsonUpdate(t, "/interfaces/interface[name=p1]/config", `{"name":"p1","type":"POD","network-instance":"a","ipv4-address":"10.0.1.5/32"}`),
		jsonUpdate(t, "/tunnel/config", `{"source-address":"192.0.2.1"}`),
	}}
	if _, err := c.Set(ctx, "t", base); err != nil {
		t.Fatal(err)
	}
	var before *gen.Device
	c.Read(func(cfg, _ *gen.Device) error { before = cfg; return nil })
	beforeJSON, _ := encodeConfig(before)

	_, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, "/network-instances/network-instance[name=a]/config/description", `"changed"`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	var after *gen.Device
	c.Read(func(cfg, _ *gen.Device) error { after = cfg; return nil })
	if NetworkInstances(after)["b"] != NetworkInstances(before)["b"] {
		t.Error("the Set copied VRF b, which it does not name")
	}
	if Interfaces(after)["p1"] != Interfaces(before)["p1"] || after.Tunnel != before.Tunnel {
		t.Error("the Set copied the interfaces or the tunnel, which it does not name")
	}
	if NetworkInstances(after)["a"] == NetworkInstances(before)["a"] {
		t.Error("the Set changed VRF a in place instead of in a copy")
	}
	if got, _ := encodeConfig(before); string(got) != string(beforeJSON) {
		t.Fatalf("the previous running configuration changed:\n%s\nwant\n%s", got, beforeJSON)
	}
	// A failing Set edits a and b, then fails: nothing it touched leaks
	// into the running configuration.
	_, err = c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, "/network-instances/network-instance[name=b]/config/description", `"lost"`),
		jsonUpdate(t, "/tunnel/config/source-address", `"not an address"`),
	}})
	if err == nil {
		t.Fatal("a Set with a bad tunnel source address was accepted")
	}
	if NetworkInstances(after)["b"].GetConfig().Description != nil {
		t.Fatal("a failed Set changed VRF b of the running configuration")
	}
}
