package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openconfig/gnmi/value"
	"github.com/openconfig/ygot/ygot"

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
	version := map[string]string{}
	for _, m := range gen.ΓModelData {
		version[m.GetName()] = m.GetVersion()
	}
	for _, name := range []string{"isthmus-network-instance", "isthmus-interfaces", "isthmus-bgp", "isthmus-tunnel", "isthmus-acl", "isthmus-types"} {
		m := models[name]
		if m == nil || !strings.HasPrefix(m.GetVersion(), "1.") || m.GetVersion() != version[name] || m.GetOrganization() != "Isthmus" {
			t.Errorf("model %s = %v, want version %s (1.x) by Isthmus", name, m, version[name])
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

// envWithState commits red and writes state for it as a reconciler would.
func envWithState(t *testing.T) *testEnv {
	t.Helper()
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{
		Forwarding: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Forwarding{Labels: []uint32{100}},
		Counters:   &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{NoRoute: ygot.Uint64(7)},
	}
	if err := e.core.UpdateState(vrfPath("red")+"/state", st); err != nil {
		t.Fatal(err)
	}
	return e
}

// getOne runs a Get of one path and returns the updates of its one
// notification.
func getOne(t *testing.T, e *testEnv, typ gpb.GetRequest_DataType, enc gpb.Encoding, path string) []*gpb.Update {
	t.Helper()
	resp, err := e.cli.Get(viewer(), &gpb.GetRequest{Type: typ, Encoding: enc, Path: []*gpb.Path{mustPath(t, path)}})
	if err != nil {
		t.Fatalf("get %s %s %s: %v", typ, enc, path, err)
	}
	if len(resp.GetNotification()) != 1 {
		t.Fatalf("get %s: %d notifications, want 1", path, len(resp.GetNotification()))
	}
	n := resp.GetNotification()[0]
	if n.GetTimestamp() == 0 {
		t.Errorf("get %s: no timestamp", path)
	}
	return n.GetUpdate()
}

// jsonOf returns the JSON value of an update as a generic value.
func jsonOf(t *testing.T, u *gpb.Update) any {
	t.Helper()
	b := u.GetVal().GetJsonIetfVal()
	if b == nil {
		b = u.GetVal().GetJsonVal()
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", pathString(u.GetPath()), err, b)
	}
	return v
}

// leafMap maps the rendered path of every scalar update to its value.
func leafMap(t *testing.T, us []*gpb.Update) map[string]any {
	t.Helper()
	m := map[string]any{}
	for _, u := range us {
		v, err := value.ToScalar(u.GetVal())
		if err != nil {
			t.Fatalf("%s: %v", pathString(u.GetPath()), err)
		}
		m[pathString(u.GetPath())] = v
	}
	return m
}

func TestGetDataTypes(t *testing.T) {
	e := envWithState(t)
	red := vrfPath("red")
	cfg := leafMap(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, red))
	if cfg[red+"/config/route-distinguisher"] != "65000:1" {
		t.Errorf("CONFIG lacks the rd: %v", cfg)
	}
	for p := range cfg {
		if strings.Contains(p, "/state/") {
			t.Errorf("CONFIG returned state leaf %s", p)
		}
	}
	for _, typ := range []gpb.GetRequest_DataType{gpb.GetRequest_STATE, gpb.GetRequest_OPERATIONAL} {
		st := leafMap(t, getOne(t, e, typ, gpb.Encoding_PROTO, red))
		if st[red+"/state/counters/no-route"] != uint64(7) {
			t.Errorf("%s lacks counters: %v", typ, st)
		}
		for p := range st {
			if strings.Contains(p, "/config/") {
				t.Errorf("%s returned config leaf %s", typ, p)
			}
		}
	}
	all := leafMap(t, getOne(t, e, gpb.GetRequest_ALL, gpb.Encoding_PROTO, red))
	if all[red+"/config/route-distinguisher"] != "65000:1" || all[red+"/state/counters/no-route"] != uint64(7) {
		t.Errorf("ALL is not config and state merged: %v", all)
	}
	// A config leaf has no STATE data; a state leaf no CONFIG data.
	for _, c := range []struct {
		typ  gpb.GetRequest_DataType
		path string
	}{{gpb.GetRequest_STATE, red + "/config/route-distinguisher"}, {gpb.GetRequest_CONFIG, red + "/state/forwarding/labels"}} {
		_, err := e.cli.Get(viewer(), &gpb.GetRequest{Type: c.typ, Path: []*gpb.Path{mustPath(t, c.path)}})
		if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), c.path) {
			t.Errorf("%s %s: %v, want NotFound naming the path", c.typ, c.path, err)
		}
	}
}

func TestGetEncodings(t *testing.T) {
	e := envWithState(t)
	red := vrfPath("red")

	// JSON_IETF qualifies the top-level members with their module.
	v := jsonOf(t, getOne(t, e, gpb.GetRequest_ALL, gpb.Encoding_JSON_IETF, red)[0]).(map[string]any)
	cfg, ok := v["isthmus-network-instance:config"].(map[string]any)
	if !ok || cfg["route-distinguisher"] != "65000:1" || cfg["type"] != "L3VRF" {
		t.Errorf("JSON_IETF subtree = %v", v)
	}
	// RFC 7951 writes 64-bit counters as strings.
	st := v["isthmus-network-instance:state"].(map[string]any)
	if st["counters"].(map[string]any)["no-route"] != "7" {
		t.Errorf("JSON_IETF counter = %#v, want \"7\"", st["counters"])
	}
	root := jsonOf(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_JSON_IETF, "/")[0]).(map[string]any)
	if _, ok := root["isthmus-network-instance:network-instances"]; !ok {
		t.Errorf("JSON_IETF root = %v", root)
	}
	leaf := getOne(t, e, gpb.GetRequest_STATE, gpb.Encoding_JSON_IETF, red+"/state/counters/no-route")[0]
	if string(leaf.GetVal().GetJsonIetfVal()) != `"7"` {
		t.Errorf("JSON_IETF uint64 leaf = %s", leaf.GetVal().GetJsonIetfVal())
	}

	// JSON (internal) has no module names and keys lists by their key.
	j := jsonOf(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_JSON, "/network-instances")[0]).(map[string]any)
	if _, ok := j["network-instance"].(map[string]any)["red"]; !ok {
		t.Errorf("JSON = %v", j)
	}
	jl := getOne(t, e, gpb.GetRequest_STATE, gpb.Encoding_JSON, red+"/state/forwarding/labels")[0]
	if string(jl.GetVal().GetJsonVal()) != `[100]` {
		t.Errorf("JSON leaf-list = %s", jl.GetVal().GetJsonVal())
	}

	// PROTO gives scalar values, one per leaf.
	p := getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, red+"/config/type")
	if len(p) != 1 || p[0].GetVal().GetStringVal() != "L3VRF" {
		t.Errorf("PROTO leaf = %v", p)
	}
	lab := getOne(t, e, gpb.GetRequest_STATE, gpb.Encoding_PROTO, red+"/state/forwarding/labels")
	if got := lab[0].GetVal().GetLeaflistVal().GetElement(); len(got) != 1 || got[0].GetUintVal() != 100 {
		t.Errorf("PROTO leaf-list = %v", lab)
	}

	_, err := e.cli.Get(viewer(), &gpb.GetRequest{Encoding: gpb.Encoding_ASCII, Path: []*gpb.Path{mustPath(t, red)}})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ASCII: %v, want Unimplemented", err)
	}
}

func TestGetWildcards(t *testing.T) {
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	e.addVRF(t, "blue", "65000:2", "10.2.0.0/24")
	want := map[string]any{
		vrfPath("red") + "/config/route-distinguisher":  "65000:1",
		vrfPath("blue") + "/config/route-distinguisher": "65000:2",
	}
	for _, p := range []string{
		"/network-instances/network-instance[name=*]/config/route-distinguisher",
		"/network-instances/network-instance/config/route-distinguisher",
		"/network-instances/*/config/route-distinguisher",
		"/*/network-instance[name=*]/*/route-distinguisher",
		"/network-instances/.../route-distinguisher",
		"/.../config/route-distinguisher",
		"/isthmus-network-instance:network-instances/network-instance/config/route-distinguisher",
	} {
		for _, enc := range []gpb.Encoding{gpb.Encoding_PROTO, gpb.Encoding_JSON_IETF} {
			got := map[string]any{}
			for _, u := range getOne(t, e, gpb.GetRequest_CONFIG, enc, p) {
				if enc == gpb.Encoding_PROTO {
					got[pathString(u.GetPath())] = u.GetVal().GetStringVal()
				} else {
					got[pathString(u.GetPath())] = jsonOf(t, u)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", p, enc, diff)
			}
		}
	}
	// A trailing ... is the whole subtree.
	sub := leafMap(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, vrfPath("red")+"/..."))
	if sub[vrfPath("red")+"/address-pools/address-pool[prefix=10.1.0.0/24]/config/prefix"] != "10.1.0.0/24" || len(sub) != 8 {
		t.Errorf("red/... = %v", sub)
	}
	// A wildcard that matches the schema but no data is NotFound.
	_, err := e.cli.Get(viewer(), &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, "/interfaces/interface[name=*]/config")}})
	if status.Code(err) != codes.NotFound {
		t.Errorf("empty wildcard: %v, want NotFound", err)
	}
}

func TestGetPrefixTargetAndErrors(t *testing.T) {
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	resp, err := e.cli.Get(viewer(), &gpb.GetRequest{
		Prefix:   &gpb.Path{Target: e.core.Target(), Elem: mustPath(t, vrfPath("red")).GetElem()},
		Path:     []*gpb.Path{mustPath(t, "/config/route-distinguisher"), mustPath(t, "/config/type")},
		Encoding: gpb.Encoding_PROTO,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetNotification()) != 2 {
		t.Fatalf("%d notifications, want one per path", len(resp.GetNotification()))
	}
	n := resp.GetNotification()[0]
	if n.GetPrefix().GetTarget() != e.core.Target() || n.GetUpdate()[0].GetVal().GetStringVal() != "65000:1" {
		t.Errorf("notification = %v", n)
	}
	for _, c := range []struct {
		name string
		req  *gpb.GetRequest
		code codes.Code
		want string
	}{
		{"unknown element", &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, vrfPath("red")+"/config/nope")}}, codes.InvalidArgument, vrfPath("red") + "/config/nope"},
		{"unknown key", &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, "/network-instances/network-instance[id=red]")}}, codes.InvalidArgument, "[id=red]"},
		{"wildcard into nothing", &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, "/network-instances/*/nope")}}, codes.InvalidArgument, "/network-instances/*/nope"},
		{"valid path without data", &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, vrfPath("blue"))}}, codes.NotFound, vrfPath("blue")},
		{"missing leaf", &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, vrfPath("red")+"/config/description")}}, codes.NotFound, "description"},
		{"other target", &gpb.GetRequest{Prefix: &gpb.Path{Target: "elsewhere"}}, codes.NotFound, "elsewhere"},
		{"other origin", &gpb.GetRequest{Path: []*gpb.Path{{Origin: "openconfig", Elem: mustPath(t, "/interfaces").GetElem()}}}, codes.InvalidArgument, "origin"},
		{"unknown model", &gpb.GetRequest{UseModels: []*gpb.ModelData{{Name: "openconfig-bgp"}}}, codes.InvalidArgument, "openconfig-bgp"},
	} {
		_, err := e.cli.Get(viewer(), c.req)
		if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.want) {
			t.Errorf("%s: %v, want %s naming %q", c.name, err, c.code, c.want)
		}
	}
	// An empty request is the whole tree.
	resp, err = e.cli.Get(viewer(), &gpb.GetRequest{Encoding: gpb.Encoding_JSON_IETF})
	if err != nil || len(resp.GetNotification()) != 1 {
		t.Fatalf("empty get: %v, %v", resp, err)
	}
}
