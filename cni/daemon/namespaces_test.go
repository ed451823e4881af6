package daemon_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestCommittedNamespaceMappingChoosesVRF checks that the VRF of a pod is
// the one /cni/namespaces maps its namespace to, over the static
// configuration, from the next ADD on.
func TestCommittedNamespaceMappingChoosesVRF(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{Namespaces: map[string]string{"shop": "red"}}, &daemon.NamespaceState{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	d.AddVRF("blue", "65000:2", "10.2.0.0/24")
	c := client(t, d)
	ctx := context.Background()
	const shop = "/cni/namespaces/namespace[name=shop]"
	mapTo := func(vrf string) error {
		p, err := ygot.StringToStructuredPath(shop)
		if err != nil {
			t.Fatal(err)
		}
		js := []byte(`{"config":{"name":"shop","network-instance":"` + vrf + `"}}`)
		_, err = d.Core.Set(ctx, "test", &gpb.SetRequest{Replace: []*gpb.Update{{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: js}}}}})
		return err
	}
	add := func(pod, wantVRF string) {
		t.Helper()
		resp, err := c.Add(ctx, addReq("net", pod))
		if err != nil {
			t.Fatalf("add %s: %v", pod, err)
		}
		if resp.Attachment.VRF != wantVRF || d.Interface("ist"+pod).GetConfig().GetNetworkInstance() != wantVRF {
			t.Fatalf("pod %s joined %q, want %q", pod, resp.Attachment.VRF, wantVRF)
		}
	}

	add("pod1", "red") // the static configuration
	if err := mapTo("blue"); err != nil {
		t.Fatalf("map shop to blue: %v", err)
	}
	add("pod2", "blue")
	if got, ok := stateOf(t, d, "shop"); !ok || got != "blue" {
		t.Fatalf("state says shop maps to %q, want blue", got)
	}
	if got := d.Interface("istpod1").GetConfig().GetNetworkInstance(); got != "red" {
		t.Fatalf("pod1 moved to %q: a mapping applies to new pods only", got)
	}

	// A mapping to a VRF that does not exist is refused and changes nothing.
	err := mapTo("green")
	var pe *nos.PathError
	if !errors.As(err, &pe) || !errors.Is(err, nos.ErrInvalid) || pe.Path != shop+"/config/network-instance" || !strings.Contains(err.Error(), "green") {
		t.Fatalf("map shop to a missing VRF: err = %v", err)
	}
	add("pod3", "blue")

	// Without the mapping the static configuration decides again.
	p, err := ygot.StringToStructuredPath(shop)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Core.Set(ctx, "test", &gpb.SetRequest{Delete: []*gpb.Path{p}}); err != nil {
		t.Fatalf("delete mapping: %v", err)
	}
	add("pod4", "red")
	if got, ok := stateOf(t, d, "shop"); ok {
		t.Fatalf("state of a deleted mapping stays: %q", got)
	}
}

// stateOf returns the VRF the state tree says namespace ns maps to, and
// whether the state has the namespace at all.
func stateOf(t *testing.T, d *testdaemon.Daemon, ns string) (vrf string, ok bool) {
	t.Helper()
	if err := d.Core.Read(func(_, st *gen.Device) error {
		e := st.GetCni().GetNamespaces().GetNamespace(ns)
		vrf, ok = e.GetState().GetNetworkInstance(), e != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return vrf, ok
}
