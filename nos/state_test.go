package nos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/openconfig/gnmi/ctree"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

const (
	redPath = "/network-instances/network-instance[name=red]"
	bgpPath = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp"
	nbrPath = bgpPath + "/neighbors/neighbor[neighbor-address=192.0.2.2]"
)

// stateBase commits red with a pod and a static route, an ACL set, and
// BGP with one neighbor that has no afi-safi configured.
func stateBase(t *testing.T, c *Core) {
	t.Helper()
	_, err := c.Set(context.Background(), "a", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, redPath, redVRF),
		jsonUpdate(t, "/interfaces/interface[name=pod1]", `{"config":{"name":"pod1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32"}}`),
		jsonUpdate(t, redPath+"/static-routes/static[prefix=10.9.0.0/24]/config", `{"prefix":"10.9.0.0/24","interface":"pod1"}`),
		jsonUpdate(t, "/acl/acl-sets/acl-set[name=web]/config", `{"name":"web"}`),
		jsonUpdate(t, "/network-instances/network-instance[name=default]", `{"config":{"name":"default","type":"DEFAULT"},
		  "protocols":{"protocol":[{"identifier":"BGP","name":"bgp","config":{"identifier":"BGP","name":"bgp"},
		    "bgp":{"global":{"config":{"as":65000,"router-id":"192.0.2.1"}},
		      "neighbors":{"neighbor":[{"neighbor-address":"192.0.2.2","config":{"neighbor-address":"192.0.2.2","peer-as":65000}}]}}}]}}`),
	}})
	if err != nil {
		t.Fatalf("base: %v", err)
	}
}

func vrfState(noRoute uint64) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State {
	return &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{
		Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{NoRoute: ygot.Uint64(noRoute)},
	}
}

// cacheLeaves counts the telemetry cache's leaves under path (cache form).
func cacheLeaves(t *testing.T, c *Core, path ...string) int {
	t.Helper()
	n := 0
	if err := c.Cache().Query(c.Target(), path, func([]string, *ctree.Leaf, any) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStateNeedsConfiguredEntries(t *testing.T) {
	c := newTestCore(t, t.TempDir())
	stateBase(t, c)
	type nbrState = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State
	type afiState = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State
	accepted := map[string]ygot.GoStruct{
		redPath + "/state":                                          vrfState(1),
		"/interfaces/interface[name=pod1]/state":                    &gen.IsthmusInterfaces_Interfaces_Interface_State{Ifindex: ygot.Uint32(4)},
		redPath + "/static-routes/static[prefix=10.9.0.0/24]/state": &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_StaticRoutes_Static_State{Label: ygot.Uint32(16)},
		"/acl/acl-sets/acl-set[name=web]/state":                     &gen.IsthmusAcl_Acl_AclSets_AclSet_State{Name: ygot.String("web")},
		nbrPath + "/state":                                          &nbrState{SessionState: gen.IsthmusTypes_SessionState_ACTIVE},
		// No afi-safi configured: the neighbor runs VPNv4, and says so.
		nbrPath + "/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/state": &afiState{Enabled: ygot.Bool(true)},
		// State-only lists need no configuration.
		"/tunnel/endpoints/endpoint[address=192.0.2.7]/state": &gen.IsthmusTunnel_Tunnel_Endpoints_Endpoint_State{InPkts: ygot.Uint64(1)},
		"/system/commits/commit[revision=99]/state":           &gen.IsthmusSystem_System_Commits_Commit_State{User: ygot.String("x")},
	}
	for path, st := range accepted {
		if err := c.UpdateState(path, st); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	refused := map[string]ygot.GoStruct{
		"/network-instances/network-instance[name=blue]/state":                                                   vrfState(1),
		"/interfaces/interface[name=pod9]/state":                                                                 &gen.IsthmusInterfaces_Interfaces_Interface_State{Ifindex: ygot.Uint32(4)},
		redPath + "/static-routes/static[prefix=10.8.0.0/24]/state":                                              &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_StaticRoutes_Static_State{Label: ygot.Uint32(16)},
		redPath + "/address-pools/address-pool[prefix=10.7.0.0/24]/state":                                        &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_AddressPools_AddressPool_State{Allocated: ygot.Uint32(1)},
		"/acl/acl-sets/acl-set[name=db]/state":                                                                   &gen.IsthmusAcl_Acl_AclSets_AclSet_State{Name: ygot.String("db")},
		bgpPath + "/neighbors/neighbor[neighbor-address=192.0.2.9]/state":                                        &nbrState{SessionState: gen.IsthmusTypes_SessionState_ACTIVE},
		"/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=other]/state": &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_State{Name: ygot.String("other")},
	}
	for path, st := range refused {
		if err := c.UpdateState(path, st); !errors.Is(err, ErrNoConfig) || !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNoConfig", path, err)
		}
	}
	if n := cacheLeaves(t, c, "network-instances", "network-instance", "blue"); n != 0 {
		t.Errorf("refused state reached telemetry: %d leaves", n)
	}
	c.Read(func(_, s *gen.Device) error {
		if s.GetNetworkInstances().GetNetworkInstance("blue") != nil || s.GetInterfaces().GetInterface("pod9") != nil {
			t.Error("refused state reached the state tree")
		}
		return nil
	})

	// With afi-safis configured, only those have state.
	if _, err := c.Set(context.Background(), "a", &gpb.SetRequest{Update: []*gpb.Update{
		jsonUpdate(t, nbrPath+"/afi-safis/afi-safi[afi-safi-name=IPV4_UNICAST]/config", `{"afi-safi-name":"IPV4_UNICAST"}`),
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateState(nbrPath+"/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/state", &afiState{Enabled: ygot.Bool(true)}); !errors.Is(err, ErrNoConfig) {
		t.Errorf("state of an afi-safi not configured beside one that is: %v, want ErrNoConfig", err)
	}
	if err := c.UpdateState(nbrPath+"/afi-safis/afi-safi[afi-safi-name=IPV4_UNICAST]/state", &afiState{Enabled: ygot.Bool(true)}); err != nil {
		t.Errorf("state of a configured afi-safi: %v", err)
	}

	// Lists inside the written struct are checked too.
	whole := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance{Name: ygot.String("red")}
	whole.GetOrCreateStaticRoutes().GetOrCreateStatic("10.6.0.0/24").GetOrCreateState().Label = ygot.Uint32(17)
	if err := c.UpdateState(redPath, whole); !errors.Is(err, ErrNoConfig) {
		t.Errorf("struct with an unconfigured static route inside: %v, want ErrNoConfig", err)
	}
}

// TestStateWriterRacingDelete is a reconciler that publishes state from
// snapshots of the configuration while commits delete the entries: once
// a delete is committed, no state of the entry may exist again, in the
// state tree or in telemetry.
func TestStateWriterRacingDelete(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	for round := range 20 {
		stateBase(t, c)
		// The writer takes its snapshot before the commit, as a
		// reconciler's publish loop does, and keeps writing from it.
		var vrfs []string
		c.Read(func(cfg, _ *gen.Device) error {
			for name := range NetworkInstances(cfg) {
				vrfs = append(vrfs, name)
			}
			return nil
		})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var unexpected error
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, name := range vrfs {
					err := c.UpdateState(fmt.Sprintf("/network-instances/network-instance[name=%s]/state", name), vrfState(i))
					if err == nil {
						err = c.UpdateState(nbrPath+"/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State{EstablishedTransitions: ygot.Uint64(i)})
					}
					if err != nil && !errors.Is(err, ErrNoConfig) && unexpected == nil {
						unexpected = err
					}
				}
			}
		}()
		if _, err := c.Set(ctx, "a", &gpb.SetRequest{Delete: []*gpb.Path{
			mustPath(t, "/interfaces/interface[name=pod1]"), mustPath(t, redPath), mustPath(t, nbrPath),
		}}); err != nil {
			t.Fatal(err)
		}
		// Let the writer go on from its stale snapshot for a while.
		for range 50 {
			if err := c.UpdateState(redPath+"/state", vrfState(1)); !errors.Is(err, ErrNoConfig) {
				t.Fatalf("round %d: write for a deleted VRF: %v, want ErrNoConfig", round, err)
			}
		}
		close(stop)
		wg.Wait()
		if unexpected != nil {
			t.Fatal(unexpected)
		}
		c.Read(func(_, s *gen.Device) error {
			if s.GetNetworkInstances().GetNetworkInstance("red") != nil {
				t.Errorf("round %d: state of deleted VRF red in the state tree", round)
			}
			if s.GetNetworkInstances().GetNetworkInstance("default").GetProtocols().GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors().GetNeighbor("192.0.2.2") != nil {
				t.Errorf("round %d: state of the deleted neighbor in the state tree", round)
			}
			return nil
		})
		if n := cacheLeaves(t, c, "network-instances", "network-instance", "red"); n != 0 {
			t.Errorf("round %d: %d telemetry leaves of deleted VRF red", round, n)
		}
		if n := cacheLeaves(t, c, "network-instances", "network-instance", "default", "protocols", "protocol", "BGP", "bgp", "bgp", "neighbors", "neighbor", "192.0.2.2"); n != 0 {
			t.Errorf("round %d: %d telemetry leaves of the deleted neighbor", round, n)
		}
		if t.Failed() {
			return
		}
	}
}

// stateWritingReconciler writes state for every VRF it applies, from
// inside Apply, as a reconciler reporting what it programmed does; with
// fail it then fails.
type stateWritingReconciler struct {
	failingReconciler
	core *Core
}

func (r *stateWritingReconciler) Start(_ context.Context, c *Core) error { r.core = c; return nil }
func (r *stateWritingReconciler) Apply(ctx context.Context, old, intended *gen.Device) error {
	for name := range NetworkInstances(intended) {
		if err := r.core.UpdateState(fmt.Sprintf("/network-instances/network-instance[name=%s]/state", name), vrfState(5)); err != nil {
			return err
		}
	}
	return r.failingReconciler.Apply(ctx, old, intended)
}

func TestStateWrittenDuringApply(t *testing.T) {
	ctx := context.Background()
	rec := &stateWritingReconciler{}
	c := newTestCore(t, t.TempDir(), rec)
	// The VRF is not running yet while the reconciler applies it: its
	// state is accepted all the same.
	if _, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, redPath, redVRF)}}); err != nil {
		t.Fatal(err)
	}
	if n := cacheLeaves(t, c, "network-instances", "network-instance", "red", "state"); n == 0 {
		t.Fatal("state written during Apply is missing")
	}
	// A commit that fails takes back the state written for its new entries.
	rec.fail = true
	_, err := c.Set(ctx, "a", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=blue]", redVRFNamed("blue", "65000:2"))}})
	if !errors.Is(err, ErrReconcile) {
		t.Fatalf("set: %v, want ErrReconcile", err)
	}
	c.Read(func(_, s *gen.Device) error {
		if s.GetNetworkInstances().GetNetworkInstance("blue") != nil {
			t.Error("state of a VRF whose commit failed stayed in the state tree")
		}
		if s.GetNetworkInstances().GetNetworkInstance("red").GetState() == nil {
			t.Error("state of red went with a failed commit that did not touch it")
		}
		return nil
	})
	if n := cacheLeaves(t, c, "network-instances", "network-instance", "blue"); n != 0 {
		t.Errorf("%d telemetry leaves of a VRF whose commit failed", n)
	}
}

func redVRFNamed(name, rd string) string {
	return fmt.Sprintf(`{"config":{"name":%q,"type":"L3VRF","route-distinguisher":%q}}`, name, rd)
}
