package daemon_test

import (
	"context"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/server"
)

// TestAttachmentInGNMIGet: a pod added over the CNI API is visible in a
// gNMI Get of its interface, with its VRF, address and pod identity.
func TestAttachmentInGNMIGet(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	if _, err := client(t, d).Add(context.Background(), addReq("red", "pod1")); err != nil {
		t.Fatal(err)
	}
	p, err := ygot.StringToStructuredPath("/interfaces/interface[name=istpod1]/config")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := server.New(d.Core).Get(context.Background(), &gpb.GetRequest{
		Path: []*gpb.Path{p}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF,
	})
	if err != nil {
		t.Fatalf("gNMI Get: %v", err)
	}
	var got strings.Builder
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			got.Write(u.GetVal().GetJsonIetfVal())
		}
	}
	for _, want := range []string{`"POD"`, `"red"`, `"10.1.0.1/32"`, `"pod1"`, `"shop"`, `"02:00:00:00:00:02"`} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("gNMI Get of the attachment lacks %s: %s", want, got.String())
		}
	}
}

// TestPoolStateAllocated: the pool's allocated counter follows ADD and DEL
// and is published again after a restart.
func TestPoolStateAllocated(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	ctx := context.Background()
	allocated := func() string {
		t.Helper()
		p, err := ygot.StringToStructuredPath("/network-instances/network-instance[name=red]/address-pools/address-pool[prefix=10.1.0.0/24]/state/allocated")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := server.New(d.Core).Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
		if err != nil {
			return err.Error()
		}
		for _, n := range resp.GetNotification() {
			for _, u := range n.GetUpdate() {
				return string(u.GetVal().GetJsonIetfVal())
			}
		}
		return "none"
	}
	c := client(t, d)
	for _, id := range []string{"a", "b", "c"} {
		if _, err := c.Add(ctx, addReq("red", id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Del(ctx, &api.DelRequest{AttachmentID: api.AttachmentID{ContainerID: "b", IfName: "eth0"}}); err != nil {
		t.Fatal(err)
	}
	if got := allocated(); got != "2" {
		t.Fatalf("allocated = %s, want 2", got)
	}
	d.Restart()
	if got := allocated(); got != "2" {
		t.Fatalf("allocated after restart = %s, want 2", got)
	}
}
