package nos

import (
	"context"
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// TestSetValueChecks covers value checks that gRPC clients cannot reach
// (protobuf refuses invalid UTF-8 in string_val on the wire, but the
// core has other callers) and the normalization of integer forms.
func TestSetValueChecks(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, redPath, redVRF),
		jsonUpdate(t, "/interfaces/interface[name=pod1]", `{"config":{"name":"pod1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32"}}`),
	}}); err != nil {
		t.Fatal(err)
	}
	rev := c.Revision()
	for _, tc := range []struct {
		name, path string
		val        *gpb.TypedValue
		want       string
	}{
		{"invalid utf-8", redPath + "/config/description", &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "ok\xff"}}, "UTF-8"},
		{"negative int for unsigned", "/interfaces/interface[name=pod1]/config/mtu", &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: -1}}, "range"},
		{"infinite double", "/interfaces/interface[name=pod1]/config/mtu", &gpb.TypedValue{Value: &gpb.TypedValue_DoubleVal{DoubleVal: 1e300}}, "range"},
		{"leaf-list for a leaf", redPath + "/config/description", &gpb.TypedValue{Value: &gpb.TypedValue_LeaflistVal{LeaflistVal: &gpb.ScalarArray{}}}, "single value"},
		{"scalar for a container", redPath + "/config", &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "x"}}, "JSON"},
	} {
		_, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{{Path: mustPath(t, tc.path), Val: tc.val}}})
		var pe *PathError
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Path != tc.path || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid at %s saying %q", tc.name, err, tc.path, tc.want)
		}
	}
	if c.Revision() != rev {
		t.Fatal("a refused Set made a revision")
	}
	// A whole int_val for an unsigned leaf is the integer it is.
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{{Path: mustPath(t, "/interfaces/interface[name=pod1]/config/mtu"), Val: &gpb.TypedValue{Value: &gpb.TypedValue_IntVal{IntVal: 1400}}}}}); err != nil {
		t.Fatal(err)
	}
	if got := c.Config().GetInterfaces().GetInterface("pod1").GetConfig().GetMtu(); got != 1400 {
		t.Fatalf("mtu = %d", got)
	}
}

// TestSetModuleQualifiedNames checks RFC 7951 member names where a grouping
// of one module is used in another: the ACL set's entries are named by
// isthmus-acl, the pod interface's acl and tags (groupings of isthmus-acl
// used in isthmus-interfaces) by isthmus-interfaces, and a wrong module is
// refused naming the member.
func TestSetModuleQualifiedNames(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	set := func(path, js string) error {
		_, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, path, js)}})
		return err
	}
	if err := set("/acl/acl-sets/acl-set[name=web]", `{"name":"web","config":{"name":"web"},
		"isthmus-acl:acl-entries":{"acl-entry":[{"sequence-id":10,"config":{"sequence-id":10,"protocol":6,"action":"ACCEPT"}}]}}`); err != nil {
		t.Fatalf("module-qualified acl-entries: %v", err)
	}
	if err := set(redPath, redVRF); err != nil {
		t.Fatal(err)
	}
	if err := set("/interfaces/interface[name=pod1]", `{"name":"pod1","config":{"name":"pod1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32"},
		"isthmus-interfaces:tags":{"tag":[{"key":"app","config":{"key":"app","value":"web"}}]}}`); err != nil {
		t.Fatalf("module-qualified tags: %v", err)
	}
	err := set("/acl/acl-sets/acl-set[name=db]", `{"name":"db","config":{"name":"db"},"isthmus-interfaces:acl-entries":{}}`)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"isthmus-acl"`) {
		t.Fatalf("acl-entries named by the wrong module: %v, want invalid naming isthmus-acl", err)
	}
}
