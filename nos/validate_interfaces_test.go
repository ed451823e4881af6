package nos

import (
	"context"
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// TestInterfaceEnabledAndMAC checks that interface configuration nothing
// would act on is refused: enabled=false on an underlay interface (only a
// pod interface is taken out of forwarding) and a MAC address on an
// underlay interface (it forwards with its link's own); enabled=true, a
// disabled pod and a pod's recorded MAC commit.
func TestInterfaceEnabledAndMAC(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	_, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, "/network-instances/network-instance[name=red]", redVRF),
		jsonUpdate(t, "/interfaces/interface[name=p1]", `{"config":{"name":"p1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32",
			"enabled":true,"mac-address":"02:00:00:00:00:01"}}`),
		jsonUpdate(t, "/interfaces/interface[name=eth9]", `{"config":{"name":"eth9","type":"UNDERLAY","enabled":true}}`),
	}})
	if err != nil {
		t.Fatalf("commit enabled interfaces and a pod's MAC: %v", err)
	}
	for _, tc := range []struct {
		name, path, js string
		wantPath, want string
	}{
		{"underlay disabled", "/interfaces/interface[name=eth9]/config/enabled", `false`,
			"/interfaces/interface[name=eth9]/config/enabled", "only a POD interface can be disabled"},
		{"MAC on an underlay", "/interfaces/interface[name=eth9]/config/mac-address", `"02:00:00:00:00:09"`,
			"/interfaces/interface[name=eth9]/config/mac-address", "only a POD interface"},
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
	if _, err := c.Set(ctx, "t", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/interfaces/interface[name=p1]/config/enabled", `false`)}}); err != nil {
		t.Fatalf("disable a pod interface: %v", err)
	}
}
