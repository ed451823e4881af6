package daemon_test

import (
	"context"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/server"
)

// TestNewPoolHasState: a pool committed while the daemon runs shows its
// allocated count (0) at once, before any ADD in its VRF.
func TestNewPoolHasState(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{}, &daemon.NamespaceState{})
	d.AddVRF("blue", "65000:2", "10.2.0.0/24")
	p, err := ygot.StringToStructuredPath("/network-instances/network-instance[name=blue]/address-pools/address-pool[prefix=10.2.0.0/24]/state/allocated")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := server.New(d.Core).Get(context.Background(), &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		t.Fatalf("get allocated of a new pool: %v", err)
	}
	if got := string(resp.GetNotification()[0].GetUpdate()[0].GetVal().GetJsonIetfVal()); got != "0" {
		t.Fatalf("allocated = %s, want 0", got)
	}
}
