package daemon_test

import (
	"context"
	"testing"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// runningEntries returns the running configuration's VRF and interface
// entries (the objects, not copies).
func runningEntries(t *testing.T, d *testdaemon.Daemon) (vrfs map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, ifs map[string]*gen.IsthmusInterfaces_Interfaces_Interface) {
	t.Helper()
	if err := d.Core.Read(func(cfg, _ *gen.Device) error {
		vrfs, ifs = nos.NetworkInstances(cfg), nos.Interfaces(cfg)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return vrfs, ifs
}

// TestAttachSharesUntouchedEntries checks that attaching and detaching a
// pod copies only the pod's interface: every VRF and every other
// interface of the running configuration stays the very same object, so
// an attachment costs the same however many VRFs are configured.
func TestAttachSharesUntouchedEntries(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	d.AddVRF("blue", "65000:2", "10.2.0.0/24")
	c := client(t, d)
	ctx := context.Background()
	if _, err := c.Add(ctx, addReq("red", "first")); err != nil {
		t.Fatal(err)
	}
	vrfs, ifs := runningEntries(t, d)
	if _, err := c.Add(ctx, addReq("red", "second")); err != nil {
		t.Fatal(err)
	}
	after, afterIfs := runningEntries(t, d)
	for name, ni := range vrfs {
		if after[name] != ni {
			t.Errorf("attaching a pod copied vrf %s", name)
		}
	}
	if afterIfs["istfirst"] != ifs["istfirst"] {
		t.Error("attaching a pod copied another pod's interface")
	}
	if afterIfs["istsecond"].GetConfig().GetNetworkInstance() != "red" {
		t.Fatal("the second pod's interface is not configured")
	}
	if _, err := c.Del(ctx, &api.DelRequest{AttachmentID: api.AttachmentID{ContainerID: "first", IfName: "eth0"}}); err != nil {
		t.Fatal(err)
	}
	last, lastIfs := runningEntries(t, d)
	if lastIfs["istfirst"] != nil {
		t.Fatal("the detached pod's interface is still configured")
	}
	if lastIfs["istsecond"] != afterIfs["istsecond"] || last["blue"] != vrfs["blue"] {
		t.Error("detaching a pod copied entries it does not change")
	}
}
