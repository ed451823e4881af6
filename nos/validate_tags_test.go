package nos

import (
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// TestValidateEnforced: tags on an interface that is not a pod interface,
// and a port match on port 0 alone, are refused naming the leaf (nothing
// would act on them as written); a range from port 0 and tags on a pod
// interface commit.
func TestValidateEnforced(t *testing.T) {
	c, ctx := aclBase(t)
	const entry = "/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=30]"
	for _, tc := range []struct {
		name, path, js string
		wantPath, want string
	}{
		{"tags on an underlay", "/interfaces/interface[name=eth9]", `{"config":{"name":"eth9","type":"UNDERLAY"},"tags":{"tag":[{"key":"app","config":{"key":"app","value":"web"}}]}}`,
			"/interfaces/interface[name=eth9]/tags", "pod interfaces only"},
		{"destination port 0", entry, `{"config":{"sequence-id":30,"protocol":6,"destination-port":0,"action":"ACCEPT"}}`,
			entry + "/config/destination-port", "port 0 alone"},
		{"source port 0..0", entry, `{"config":{"sequence-id":30,"protocol":17,"source-port":0,"source-port-end":0,"action":"DROP"}}`,
			entry + "/config/source-port", "port 0 alone"},
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
	// An existing underlay that gains tags is refused too.
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/interfaces/interface[name=eth9]", `{"config":{"name":"eth9","type":"UNDERLAY"}}`)}}); err != nil {
		t.Fatalf("commit an underlay: %v", err)
	}
	_, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/interfaces/interface[name=eth9]/tags/tag[key=tier]", `{"config":{"key":"tier","value":"db"}}`)}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "pod interfaces only") {
		t.Fatalf("tag an underlay: err = %v, want invalid", err)
	}
	// What the forwarder acts on commits.
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, entry, `{"config":{"sequence-id":30,"protocol":6,"destination-port":0,"destination-port-end":1023,"action":"ACCEPT"}}`),
		jsonUpdate(t, "/interfaces/interface[name=p1]/tags/tag[key=tier]", `{"config":{"key":"tier","value":"db"}}`),
	}}); err != nil {
		t.Fatalf("commit a range from port 0 and a pod's tag: %v", err)
	}
}
