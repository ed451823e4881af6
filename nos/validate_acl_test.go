package nos

import (
	"context"
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// aclBase is a VRF with a pod, the DEFAULT instance, a declared tag key,
// an address group scoped to the VRF and a set, which the cases below
// build on.
func aclBase(t *testing.T) (*Core, context.Context) {
	t.Helper()
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	_, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF),
		jsonUpdate(t, "/interfaces/interface[name=p1]", `{"config":{"name":"p1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32"},
			"tags":{"tag":[{"key":"app","config":{"key":"app","value":"web"}}]}}`),
		jsonUpdate(t, "/acl/tag-keys/tag-key[name=app]", `{"config":{"name":"app"}}`),
		jsonUpdate(t, "/network-instances/network-instance[name=default]", `{"config":{"name":"default","type":"DEFAULT"}}`),
		jsonUpdate(t, "/acl/address-groups/address-group[name=dc]", `{"config":{"name":"dc","prefix":["10.9.0.0/16"],"except":["10.9.1.0/24"],"network-instance":"red"},
			"tags":{"tag":[{"key":"app","config":{"key":"app","value":"db"}}]}}`),
		jsonUpdate(t, "/acl/acl-sets/acl-set[name=web]", `{"config":{"name":"web"},"acl-entries":{"acl-entry":[
			{"sequence-id":10,"config":{"sequence-id":10,"source-tag-selector":["app=web"],"protocol":6,"destination-port":5432,"destination-port-end":5440,"action":"ACCEPT"}},
			{"sequence-id":20,"config":{"sequence-id":20,"source-address-group":"dc","protocol":1,"icmp-type":8,"action":"REJECT","reject-with":"ICMP_UNREACHABLE"}}]}}`),
		jsonUpdate(t, "/interfaces/interface[name=p1]/acl/config", `{"ingress-acl-set":["web"],"egress-acl-set":["web"],"egress-default-action":"REJECT"}`),
		jsonUpdate(t, "/network-instances/network-instance[name=red]/config/tunnel-ingress-acl-set", `["web"]`),
	}})
	if err != nil {
		t.Fatalf("commit the base policy: %v", err)
	}
	return c, ctx
}

func TestACLValidation(t *testing.T) {
	c, ctx := aclBase(t)
	const entry = "/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=30]"
	for _, tc := range []struct {
		name, path, js string
		wantPath, want string
	}{
		{"reversed port range", entry, `{"config":{"sequence-id":30,"protocol":17,"destination-port":2000,"destination-port-end":1000,"action":"ACCEPT"}}`,
			entry + "/config/destination-port-end", "2000..1000 is reversed"},
		{"reversed source range", entry, `{"config":{"sequence-id":30,"protocol":6,"source-port":9,"source-port-end":8,"action":"ACCEPT"}}`,
			entry + "/config/source-port-end", "reversed"},
		{"range end without a start", entry, `{"config":{"sequence-id":30,"protocol":6,"destination-port-end":80,"action":"ACCEPT"}}`,
			entry + "/config/destination-port-end", "first port"},
		{"port without TCP or UDP", entry, `{"config":{"sequence-id":30,"destination-port":80,"action":"ACCEPT"}}`,
			entry + "/config/destination-port", "protocol 6"},
		{"icmp type without ICMP", entry, `{"config":{"sequence-id":30,"protocol":6,"icmp-type":8,"action":"ACCEPT"}}`,
			entry + "/config/icmp-type", "protocol 1"},
		{"tag selector on an unknown key", entry, `{"config":{"sequence-id":30,"destination-tag-selector":["app=web","tier!=db"],"action":"ACCEPT"}}`,
			entry + "/config/destination-tag-selector", `"tier" is not declared`},
		{"missing address group", entry, `{"config":{"sequence-id":30,"destination-address-group":"nosuch","action":"ACCEPT"}}`,
			entry + "/config/destination-address-group", `"nosuch" does not exist`},
		{"entry without action", entry, `{"config":{"sequence-id":30,"protocol":6}}`,
			entry + "/config/action", "required"},
		{"reject-with on ACCEPT", entry, `{"config":{"sequence-id":30,"protocol":6,"action":"ACCEPT","reject-with":"TCP_RESET"}}`,
			entry + "/config/reject-with", "needs action REJECT (the action is ACCEPT)"},
		{"reject-with on DROP", entry, `{"config":{"sequence-id":30,"action":"DROP","reject-with":"ICMP_UNREACHABLE"}}`,
			entry + "/config/reject-with", "needs action REJECT (the action is DROP)"},
		{"group scoped to a missing VRF", "/acl/address-groups/address-group[name=dc]/config/network-instance", `"blue"`,
			"/acl/address-groups/address-group[name=dc]/config/network-instance", `network instance "blue" does not exist`},
		{"group scoped to the DEFAULT instance", "/acl/address-groups/address-group[name=dc]/config/network-instance", `"default"`,
			"/acl/address-groups/address-group[name=dc]/config/network-instance", `"default" is not an L3VRF`},
		{"missing ingress set", "/interfaces/interface[name=p1]/acl/config/ingress-acl-set", `["web","nosuch"]`,
			"/interfaces/interface[name=p1]/acl/config/ingress-acl-set", `"nosuch" does not exist`},
		{"missing egress set", "/interfaces/interface[name=p1]/acl/config/egress-acl-set", `["nosuch"]`,
			"/interfaces/interface[name=p1]/acl/config/egress-acl-set", `"nosuch" does not exist`},
		{"missing tunnel set", "/network-instances/network-instance[name=red]/config/tunnel-ingress-acl-set", `["nosuch"]`,
			"/network-instances/network-instance[name=red]/config/tunnel-ingress-acl-set", `"nosuch" does not exist`},
		{"except outside the group", "/acl/address-groups/address-group[name=dc]/config/except", `["10.8.0.0/24"]`,
			"/acl/address-groups/address-group[name=dc]/config/except", "inside none"},
		{"group prefix with host bits", "/acl/address-groups/address-group[name=dc]/config/prefix", `["10.9.0.1/16"]`,
			"/acl/address-groups/address-group[name=dc]/config/prefix", "host bits"},
		{"sets on an underlay", "/interfaces/interface[name=eth9]", `{"config":{"name":"eth9","type":"UNDERLAY"},"acl":{"config":{"ingress-acl-set":["web"]}}}`,
			"/interfaces/interface[name=eth9]/acl/config", "pod interfaces only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rev := c.Revision()
			_, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, tc.path, tc.js)}})
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Path != tc.wantPath || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want invalid at %s containing %q", err, tc.wantPath, tc.want)
			}
			if c.Revision() != rev {
				t.Fatalf("a refused Set committed revision %d", c.Revision())
			}
		})
	}
	// Deleting what is referenced is refused too.
	for _, tc := range []struct{ del, wantPath string }{
		{"/acl/acl-sets/acl-set[name=web]", "/network-instances/network-instance[name=red]/config/tunnel-ingress-acl-set"},
		{"/acl/address-groups/address-group[name=dc]", "/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=20]/config/source-address-group"},
		{"/acl/tag-keys/tag-key[name=app]", "/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=10]/config/source-tag-selector"},
	} {
		_, err := c.Set(ctx, "t", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, tc.del)}})
		var pe *PathError
		if !errors.As(err, &pe) || pe.Path != tc.wantPath {
			t.Fatalf("delete %s: err = %v, want invalid at %s", tc.del, err, tc.wantPath)
		}
	}
}

// TestACLPolicyPersists checks that address groups and tag keys are
// tracked by the commit delta: stored, restored and diffed.
func TestACLPolicyPersists(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	old := c.Config()
	_, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, "/acl/tag-keys/tag-key[name=tier]", `{"config":{"name":"tier"}}`),
		jsonUpdate(t, "/acl/address-groups/address-group[name=dc]", `{"config":{"name":"dc","prefix":["10.9.0.0/16"]}}`),
	}})
	if err != nil {
		t.Fatalf("commit a tag key and an address group alone: %v", err)
	}
	ch := computeDelta(old, c.Config())
	if len(ch.changed[listAddressGroup]) != 1 || len(ch.changed[listTagKey]) != 1 {
		t.Fatalf("delta = %+v, want one address group and one tag key", ch)
	}
	head, err := c.store.head()
	if err != nil {
		t.Fatalf("read stored revision: %v", err)
	}
	stored, err := decodeConfig(head.Config)
	if err != nil {
		t.Fatalf("decode stored revision: %v\n%s", err, head.Config)
	}
	a, _ := encodeConfig(stored)
	b, _ := encodeConfig(c.Config())
	if string(a) != string(b) {
		t.Fatalf("stored revision\n%s\nwant\n%s", a, b)
	}
	n, err := configDiff(old, c.Config(), ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.GetUpdate()) == 0 {
		t.Fatal("the telemetry diff of the commit is empty")
	}
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/acl/address-groups/address-group[name=dc]")}}); err != nil {
		t.Fatalf("delete the group: %v", err)
	}
	if addressGroups(c.Config())["dc"] != nil {
		t.Fatal("the deleted group is still configured")
	}
}
