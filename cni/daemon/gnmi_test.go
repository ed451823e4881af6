package daemon_test

import (
	"context"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

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
