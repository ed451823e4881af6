package nos

import (
	"context"
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// TestStaticRouteWaitsForItsInterface: a static route may name a pod
// interface that is not attached yet (the route waits for it); an
// interface that exists must be in the route's VRF, whichever of the two
// comes first.
func TestStaticRouteWaitsForItsInterface(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	blue := strings.NewReplacer("red", "blue", "65000:1", "65000:2", "10.1.0.0", "10.2.0.0").Replace(redVRF)
	route := redPath + "/static-routes/static[prefix=10.9.0.0/24]/config"
	set := func(ups ...*gpb.Update) error {
		_, err := c.Set(ctx, "a", &gpb.SetRequest{Update: ups})
		return err
	}
	if err := set(jsonUpdate(t, redPath, redVRF), jsonUpdate(t, "/network-instances/network-instance[name=blue]", blue),
		jsonUpdate(t, "/interfaces/interface[name=eth0]", `{"config":{"name":"eth0","type":"UNDERLAY"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := set(jsonUpdate(t, route, `{"prefix":"10.9.0.0/24","interface":"pod1"}`)); err != nil {
		t.Fatalf("static route via a pod not attached yet: %v", err)
	}
	// The pod attaches in another VRF: refused, naming the route.
	err := set(jsonUpdate(t, "/interfaces/interface[name=pod1]", `{"config":{"name":"pod1","type":"POD","network-instance":"blue","ipv4-address":"10.2.0.5/32"}}`))
	var pe *PathError
	if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Path != route+"/interface" {
		t.Fatalf("pod attached in another VRF than its route's: %v, want invalid at %s", err, route+"/interface")
	}
	// In the route's VRF: accepted; detached again: the route waits again.
	if err := set(jsonUpdate(t, "/interfaces/interface[name=pod1]", `{"config":{"name":"pod1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32"}}`)); err != nil {
		t.Fatalf("pod attached in its route's VRF: %v", err)
	}
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, "/interfaces/interface[name=pod1]")}}); err != nil {
		t.Fatalf("pod detached under its route: %v", err)
	}
	if c.Config().GetNetworkInstances().GetNetworkInstance("red").GetStaticRoutes().GetStatic("10.9.0.0/24") == nil {
		t.Fatal("the waiting route is gone")
	}
	// Interfaces that exist elsewhere are still refused.
	for _, ifname := range []string{"eth0"} {
		err := set(jsonUpdate(t, redPath+"/static-routes/static[prefix=10.8.0.0/24]/config", `{"prefix":"10.8.0.0/24","interface":"`+ifname+`"}`))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not in network instance") {
			t.Errorf("static route via %s: %v, want invalid", ifname, err)
		}
	}
}
