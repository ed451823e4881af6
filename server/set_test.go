package server

import (
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestSetOperations(t *testing.T) {
	e := newTestEnv(t)
	start := time.Now().UnixNano()
	resp, err := e.cli.Set(admin(), &gpb.SetRequest{
		Prefix: &gpb.Path{Target: e.core.Target()},
		Update: []*gpb.Update{
			upd(t, vrfPath("red"), ietf(vrfJSON("red", "65000:1", "10.1.0.0/24"))),
			upd(t, vrfPath("blue"), ietf(vrfJSON("blue", "65000:2", "10.2.0.0/24"))),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTimestamp() < start || len(resp.GetResponse()) != 2 || resp.GetResponse()[0].GetOp() != gpb.UpdateResult_UPDATE {
		t.Fatalf("response = %v", resp)
	}
	if resp.GetPrefix().GetTarget() != e.core.Target() {
		t.Errorf("prefix not echoed: %v", resp.GetPrefix())
	}

	// Delete, replace and update in one request, relative to a prefix;
	// results come in that order.
	resp, err = e.cli.Set(admin(), &gpb.SetRequest{
		Prefix:  mustPath(t, "/network-instances"),
		Delete:  []*gpb.Path{mustPath(t, "/network-instance[name=blue]")},
		Replace: []*gpb.Update{upd(t, "/network-instance[name=red]/config", ietf(`{"name":"red","type":"L3VRF","route-distinguisher":"65000:10"}`))},
		Update:  []*gpb.Update{upd(t, "/network-instance[name=red]/config/description", str("tenant red"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ops []gpb.UpdateResult_Operation
	for _, r := range resp.GetResponse() {
		ops = append(ops, r.GetOp())
	}
	if len(ops) != 3 || ops[0] != gpb.UpdateResult_DELETE || ops[1] != gpb.UpdateResult_REPLACE || ops[2] != gpb.UpdateResult_UPDATE {
		t.Errorf("ops = %v", ops)
	}
	got := leafMap(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, vrfPath("red")+"/config"))
	if got[vrfPath("red")+"/config/route-distinguisher"] != "65000:10" || got[vrfPath("red")+"/config/description"] != "tenant red" {
		t.Errorf("red config = %v", got)
	}
	// Replace dropped the route targets.
	if _, ok := got[vrfPath("red")+"/config/import-route-target"]; ok {
		t.Errorf("replace kept import-route-target: %v", got)
	}
	if _, err := e.cli.Get(viewer(), &gpb.GetRequest{Path: []*gpb.Path{mustPath(t, vrfPath("blue"))}}); status.Code(err) != codes.NotFound {
		t.Errorf("blue after delete: %v", err)
	}

	// JSON (not IETF) values and module-qualified names are accepted.
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{
		upd(t, "/isthmus-network-instance:network-instances/network-instance[name=red]/config/description", &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: []byte(`"json"`)}}),
	}}); err != nil {
		t.Fatal(err)
	}
	got = leafMap(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, vrfPath("red")+"/config/description"))
	if got[vrfPath("red")+"/config/description"] != "json" {
		t.Errorf("description = %v", got)
	}

	// Replacing the root with what Get returned is a no-op round trip.
	before := e.configJSON(t)
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Replace: []*gpb.Update{upd(t, "/", ietf(before))}}); err != nil {
		t.Fatal(err)
	}
	if after := e.configJSON(t); after != before {
		t.Errorf("root round trip changed the configuration:\n%s\n%s", before, after)
	}
	// Deleting the root empties the configuration.
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Delete: []*gpb.Path{{}}}); err != nil {
		t.Fatal(err)
	}
	if got := e.configJSON(t); got != "{}" {
		t.Errorf("after deleting the root: %s", got)
	}
}

func TestSetUnsupported(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.cli.Set(admin(), &gpb.SetRequest{UnionReplace: []*gpb.Update{upd(t, "/", ietf(`{}`))}})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("union_replace: %v", err)
	}
}

func TestRollbackRefusals(t *testing.T) {
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	before := e.configJSON(t)
	rb := func(v *gpb.TypedValue) *gpb.Update { return upd(t, "/system/rollback", v) }
	for _, tc := range []struct {
		name string
		req  *gpb.SetRequest
		code codes.Code
	}{
		{"missing revision", &gpb.SetRequest{Update: []*gpb.Update{rb(&gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 99}})}}, codes.NotFound},
		{"not a number", &gpb.SetRequest{Update: []*gpb.Update{rb(str("latest"))}}, codes.InvalidArgument},
		{"zero", &gpb.SetRequest{Update: []*gpb.Update{rb(&gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: 0}})}}, codes.InvalidArgument},
		{"with another operation", &gpb.SetRequest{
			Update: []*gpb.Update{rb(str("1"))},
			Delete: []*gpb.Path{mustPath(t, vrfPath("red"))},
		}, codes.InvalidArgument},
	} {
		_, err := e.cli.Set(admin(), tc.req)
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), "rollback") && tc.code == codes.InvalidArgument {
			t.Errorf("%s: %v, want %v naming /system/rollback", tc.name, err, tc.code)
		}
	}
	if after := e.configJSON(t); after != before {
		t.Fatalf("a refused rollback changed the configuration:\n%s\nwant\n%s", after, before)
	}
}
