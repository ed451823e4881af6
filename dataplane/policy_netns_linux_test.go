package dataplane

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPolicyNamespaces drives policy through the core on two hosts with
// real pods: host b's pod is tagged app=db and isolated for ingress with
// a set that accepts ICMP echo from pods tagged app=web (host a's pod,
// described on host b as a tagged address group). Pings from a pass and
// are counted on the entry; b's own pings out still get their replies
// (stateful); once the selector names another tag the same pings stop
// (the committed change re-evaluates the flow) and are counted as denied
// on the interface and in the VRF.
func TestPolicyNamespaces(t *testing.T) { policyNamespaces(t, false) }

// TestPolicyNamespacesMPLSoMPLS is TestPolicyNamespaces over MPLSoMPLS,
// whose decapsulation happens in XDP before tc delivers.
func TestPolicyNamespacesMPLSoMPLS(t *testing.T) { policyNamespaces(t, true) }

func policyNamespaces(t *testing.T, mplsOverMPLS bool) {
	var extra func(int, *gen.Device)
	encap := nos.EncapMPLSoUDP
	if mplsOverMPLS {
		encap = nos.EncapMPLSoMPLS
		extra = func(i int, d *gen.Device) {
			d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red").GetOrCreateConfig().Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
			other := []string{"192.0.2.1", "192.0.2.2"}[1-i]
			d.GetOrCreateTunnel().GetOrCreateNeighbors().GetOrCreateNeighbor(other).GetOrCreateConfig().Address = ygot.String(other)
		}
	}
	a, b, addrs := newCoreHosts(t, extra)
	labelA, err := a.core.Labels().VRF("red")
	must(t, err)
	labelB, err := b.core.Labels().Prefix("red", netip.PrefixFrom(b.pod.addr, 32))
	must(t, err)
	a.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.2/32")},
		NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: labelB, Encap: encap}}}}})
	b.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.0/24")},
		NextHops: []nos.NextHop{{Endpoint: addrs[0], Label: labelA, Encap: encap}}}}})
	waitPing(t, a.pod, b.pod.addr, true)

	policy := func(webTag string) func(*gen.Device) error {
		return func(d *gen.Device) error {
			acl := d.GetOrCreateAcl()
			acl.GetOrCreateTagKeys().GetOrCreateTagKey("app").GetOrCreateConfig().Name = ygot.String("app")
			g := acl.GetOrCreateAddressGroups().GetOrCreateAddressGroup("pods-of-a")
			g.GetOrCreateConfig().Name = ygot.String("pods-of-a")
			g.GetOrCreateConfig().Prefix = []string{a.pod.addr.String() + "/32"}
			g.GetOrCreateTags().GetOrCreateTag("app").GetOrCreateConfig().Value = ygot.String("web")
			set := acl.GetOrCreateAclSets().GetOrCreateAclSet("db-in")
			set.GetOrCreateConfig().Name = ygot.String("db-in")
			e := set.GetOrCreateAclEntries().GetOrCreateAclEntry(10).GetOrCreateConfig()
			e.SequenceId = ygot.Uint32(10)
			e.SourceTagSelector = []string{"app=" + webTag}
			e.Protocol, e.IcmpType = ygot.Uint8(1), ygot.Uint8(8)
			e.Action = gen.IsthmusAcl_AclAction_ACCEPT
			intf := d.GetOrCreateInterfaces().GetOrCreateInterface(b.pod.hostIf)
			intf.GetOrCreateTags().GetOrCreateTag("app").GetOrCreateConfig().Value = ygot.String("db")
			intf.GetOrCreateAcl().GetOrCreateConfig().IngressAclSet = []string{"db-in"}
			return nil
		}
	}
	b.commit(t, policy("web"))
	waitPing(t, a.pod, b.pod.addr, true)
	waitPing(t, b.pod, a.pod.addr, true) // b's own flow: the replies come back
	b.commit(t, policy("other"))
	waitPing(t, a.pod, b.pod.addr, false)
	waitPing(t, b.pod, a.pod.addr, true)

	must(t, b.rec.PublishState())
	must(t, b.rec.publishPolicy())
	err = b.core.Read(func(_, state *gen.Device) error {
		st := nos.Interfaces(state)[b.pod.hostIf].GetAcl().GetState()
		if st.GetIngressDeniedPackets() == 0 {
			return fmt.Errorf("interface acl state %+v: no denied packets", st)
		}
		if len(st.GetIngressAclSet()) != 1 {
			return fmt.Errorf("interface acl state %+v: no config mirror", st)
		}
		c := nos.NetworkInstances(state)["red"].GetState().GetCounters()
		if c.GetAclDenied() == 0 {
			return fmt.Errorf("vrf counters %+v: acl-denied is 0", c)
		}
		es := state.GetAcl().GetAclSets().GetAclSet("db-in").GetAclEntries().GetAclEntry(10).GetState()
		if es.GetMatchedPackets() == 0 || es.GetMatchedOctets() == 0 {
			return fmt.Errorf("entry state %+v: nothing matched", es)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	flows, err := b.rec.Dataplane().PolicyFlows()
	must(t, err)
	denied := false
	for _, f := range flows {
		denied = denied || (f.Source.Addr() == a.pod.addr && f.Verdict == "DENY" && !f.Stale)
	}
	if !denied {
		t.Errorf("no current DENY flow from %v among %+v", a.pod.addr, flows)
	}
}
