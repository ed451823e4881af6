package nos

import (
	"context"
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

func TestCNINamespaceNeedsAnL3VRF(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := New(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c := first
	const shop = "/cni/namespaces/namespace[name=shop]"
	mapping := func(vrf string) *gpb.SetRequest {
		return &gpb.SetRequest{Replace: []*gpb.Update{jsonUpdate(t, shop, `{"config":{"name":"shop","network-instance":"`+vrf+`"}}`)}}
	}
	_, err = c.Set(ctx, "a", mapping("red"))
	var pe *PathError
	if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Path != shop+"/config/network-instance" || !strings.Contains(err.Error(), `"red" does not exist`) {
		t.Fatalf("mapping to a missing VRF: err = %v", err)
	}
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, "a", mapping("red")); err != nil {
		t.Fatalf("mapping to VRF red: %v", err)
	}
	if got := c.Config().GetCni().GetNamespaces().GetNamespace("shop").GetConfig().GetNetworkInstance(); got != "red" {
		t.Fatalf("shop maps to %q, want red", got)
	}
	st.Close()
	c = newTestCore(t, dir)
	if got := c.Config().GetCni().GetNamespaces().GetNamespace("shop").GetConfig().GetNetworkInstance(); got != "red" {
		t.Fatalf("after a restart shop maps to %q, want red", got)
	}
	// Deleting the VRF while a namespace maps to it is refused.
	_, err = c.Set(ctx, "a", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/network-instances/network-instance[name=red]")}})
	if !errors.As(err, &pe) || pe.Path != shop+"/config/network-instance" {
		t.Fatalf("delete a mapped VRF: err = %v", err)
	}
	_, err = c.Set(ctx, "a", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, shop), mustPath(t, "/network-instances/network-instance[name=red]")}})
	if err != nil {
		t.Fatalf("delete mapping and VRF together: %v", err)
	}
}
