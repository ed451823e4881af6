package server

import (
	"encoding/json"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/gen"
)

func TestCapabilities(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.cli.Capabilities(viewer(), &gpb.CapabilityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetGNMIVersion() != "0.10.0" {
		t.Errorf("gNMI version = %q", resp.GetGNMIVersion())
	}
	models := map[string]*gpb.ModelData{}
	for _, m := range resp.GetSupportedModels() {
		models[m.GetName()] = m
	}
	for _, name := range []string{"isthmus-network-instance", "isthmus-interfaces", "isthmus-bgp", "isthmus-tunnel", "isthmus-acl", "isthmus-types"} {
		m := models[name]
		if m == nil || m.GetVersion() != "1.0.0" || m.GetOrganization() != "Isthmus" {
			t.Errorf("model %s = %v, want version 1.0.0 by Isthmus", name, m)
		}
	}
	if len(resp.GetSupportedModels()) != len(gen.ΓModelData) {
		t.Errorf("%d models, want %d", len(resp.GetSupportedModels()), len(gen.ΓModelData))
	}
	want := map[gpb.Encoding]bool{gpb.Encoding_JSON: true, gpb.Encoding_JSON_IETF: true, gpb.Encoding_PROTO: true}
	for _, enc := range resp.GetSupportedEncodings() {
		delete(want, enc)
	}
	if len(want) > 0 {
		t.Errorf("encodings %v missing", want)
	}
}

func TestGetSmoke(t *testing.T) {
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	for _, enc := range []gpb.Encoding{gpb.Encoding_JSON_IETF, gpb.Encoding_JSON, gpb.Encoding_PROTO} {
		for _, p := range []string{"/", vrfPath("red"), vrfPath("red") + "/config/route-distinguisher", "/network-instances/network-instance[name=*]/config/type", "/network-instances/.../route-distinguisher", "/*/network-instance/config"} {
			resp, err := e.cli.Get(viewer(), &gpb.GetRequest{Encoding: enc, Path: []*gpb.Path{mustPath(t, p)}})
			if err != nil {
				t.Errorf("%s %s: %v", enc, p, err)
				continue
			}
			b, _ := json.Marshal(resp.GetNotification())
			t.Logf("%s %s: %s", enc, p, b)
		}
	}
	_, err := e.cli.Get(viewer(), &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, "/network-instances/network-instance[name=x]/nope")}})
	t.Log(status.Code(err), err)
	if status.Code(err) != codes.InvalidArgument {
		t.Error("want InvalidArgument")
	}
}
