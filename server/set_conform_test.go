package server

import (
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// TestSetConformance covers what the gNMI specification says a Set must
// accept: deletes of paths that hold no data (section 3.4.6), values in
// the encodings and forms a client may use; and that a Set that changes
// nothing makes no revision.
func TestSetConformance(t *testing.T) {
	e := newTestEnv(t)
	baseConfig(t, e)
	before := e.configJSON(t)
	rev := e.core.Revision()
	same := func(t *testing.T, what string) {
		t.Helper()
		if got := e.core.Revision(); got != rev {
			t.Errorf("%s: revision %d, want %d (nothing changed)", what, got, rev)
		}
		if after := e.configJSON(t); after != before {
			t.Errorf("%s changed the configuration:\n%s\n%s", what, before, after)
		}
	}

	// Deletes of what is not there are accepted silently.
	for _, p := range []string{
		green,
		red + "/config/description",
		red + "/address-pools/address-pool[prefix=10.7.0.0/24]",
		bgp + "/neighbors/neighbor[neighbor-address=192.0.2.99]",
		green + "/static-routes/static[prefix=10.8.0.0/24]/config/interface",
		"/acl/acl-sets/acl-set[name=nosuch]/acl-entries",
	} {
		resp, err := e.cli.Set(admin(), &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, p)}})
		if err != nil {
			t.Errorf("delete of missing %s: %v, want accepted", p, err)
			continue
		}
		if len(resp.GetResponse()) != 1 || resp.GetResponse()[0].GetOp() != gpb.UpdateResult_DELETE {
			t.Errorf("delete of missing %s: response %v", p, resp)
		}
	}
	same(t, "deletes of missing paths")

	// Setting what is already there is no change.
	for _, u := range []*gpb.Update{
		upd(t, redRD, str("65000:1")),
		upd(t, red, ietf(vrfJSON("red", "65000:1", "10.1.0.0/24"))),
		upd(t, pod1+"/config", ietf(`{"isthmus-interfaces:type":"POD","network-instance":"red"}`)),
	} {
		if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{u}}); err != nil {
			t.Errorf("set %s to its value: %v", pathString(u.GetPath()), err)
		}
	}
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Replace: []*gpb.Update{upd(t, "/", ietf(before))}}); err != nil {
		t.Errorf("replace the root with itself: %v", err)
	}
	same(t, "sets of unchanged values")

	// Integers in the forms clients send: int_val for an unsigned leaf, a
	// whole double, and the node's own module prefix.
	for _, u := range []*gpb.Update{
		upd(t, pod1+"/config/mtu", &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: 1400}}),
		upd(t, pod1+"/config/mtu", &gpb.TypedValue{Value: &gpb.TypedValue_DoubleVal{DoubleVal: 1450}}),
		upd(t, pod1, ietf(`{"isthmus-interfaces:config":{"isthmus-interfaces:mtu":1500}}`)),
	} {
		if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{u}}); err != nil {
			t.Errorf("set %s: %v", pathString(u.GetPath()), err)
		}
	}
	got := leafMap(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, pod1+"/config/mtu"))
	if got[pod1+"/config/mtu"] != uint64(1500) {
		t.Errorf("mtu = %v, want 1500", got)
	}
	if e.core.Revision() != rev+3 {
		t.Errorf("revision %d after three changes from %d", e.core.Revision(), rev)
	}

	// A static route may name a pod that has not attached yet.
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{
		upd(t, red+"/static-routes/static[prefix=10.8.0.0/24]/config", ietf(`{"prefix":"10.8.0.0/24","interface":"pod9"}`)),
	}}); err != nil {
		t.Errorf("static route via a pod not attached yet: %v", err)
	}
}
