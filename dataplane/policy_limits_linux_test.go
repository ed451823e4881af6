package dataplane

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPolicyPrefixRoomMatchesForwarder keeps polMaxPrefixes equal to the
// room of the forwarder's classifier and rule maps.
func TestPolicyPrefixRoomMatchesForwarder(t *testing.T) {
	spec, err := loadForwarder()
	if err != nil {
		t.Fatalf("load forwarder spec: %v", err)
	}
	for _, m := range []string{"pol_src", "pol_dst", "pol_dport", "pol_sport"} {
		if got := spec.Maps[m].MaxEntries; got != polMaxPrefixes {
			t.Errorf("map %s holds %d entries, polMaxPrefixes is %d", m, got, polMaxPrefixes)
		}
	}
	if got := spec.Maps["pol_words"].MaxEntries; got != polMaxWords {
		t.Errorf("pol_words holds %d words, polMaxWords is %d", got, polMaxWords)
	}
	// Room for the node's rules twice: spares and a change's new
	// attachments beside those in force.
	if got := spec.Maps["pol_rules"].MaxEntries; got != polRuleSlots || polRuleSlots < 2*polMaxPrefixes {
		t.Errorf("pol_rules holds %d rules, polRuleSlots is %d, the node's rules at most %d", got, polRuleSlots, polMaxPrefixes)
	}
}

// TestPolicyNodeLimitRefusedByCommit: a commit whose policy needs more
// rules than the forwarder's rule table holds (17 pods, each with a set
// of 16,383 entries they share and one entry of its own: 17 distinct
// attachments of 16,384 rules) is refused as invalid naming the 17th
// point, before anything is programmed, and the revision stays.
func TestPolicyNodeLimitRefusedByCommit(t *testing.T) {
	requireRoot(t)
	h := &coreHost{ns: newNS(t, "host")}
	h.startFresh(t)
	pods := polMaxPrefixes/PolicyMaxRules + 1
	h.commit(t, func(d *gen.Device) error {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("65000:1")
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
		return nil
	})
	rev := h.core.Revision()
	err := h.ns.do(func() error {
		_, err := h.core.Commit(context.Background(), "test", func(d *gen.Device) error {
			sets := d.GetOrCreateAcl().GetOrCreateAclSets()
			shared := sets.GetOrCreateAclSet("shared")
			shared.GetOrCreateConfig().Name = ygot.String("shared")
			for seq := uint32(1); seq < PolicyMaxRules; seq++ {
				e := shared.GetOrCreateAclEntries().GetOrCreateAclEntry(seq).GetOrCreateConfig()
				e.SequenceId, e.Protocol, e.DestinationPort, e.Action = ygot.Uint32(seq), ygot.Uint8(6), ygot.Uint16(uint16(seq)), gen.IsthmusAcl_AclAction_ACCEPT
			}
			for i := range pods {
				name := fmt.Sprintf("p%02d", i)
				own := sets.GetOrCreateAclSet(name)
				own.GetOrCreateConfig().Name = ygot.String(name)
				e := own.GetOrCreateAclEntries().GetOrCreateAclEntry(PolicyMaxRules).GetOrCreateConfig()
				e.SequenceId, e.Protocol, e.DestinationPort, e.Action = ygot.Uint32(PolicyMaxRules), ygot.Uint8(17), ygot.Uint16(uint16(i+1)), gen.IsthmusAcl_AclAction_ACCEPT
				intf := d.GetOrCreateInterfaces().GetOrCreateInterface(name)
				pc := intf.GetOrCreateConfig()
				pc.Name, pc.Type, pc.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
				pc.Ipv4Address = ygot.String(fmt.Sprintf("10.1.0.%d/32", i+2))
				pc.GetOrCreatePod().PeerMacAddress = ygot.String(fmt.Sprintf("0a:00:00:00:%02x:02", i+1))
				intf.GetOrCreateAcl().GetOrCreateConfig().IngressAclSet = []string{"shared", name}
			}
			return nil
		})
		return err
	})
	path := fmt.Sprintf("/interfaces/interface[name=p%02d]/acl/config/ingress-acl-set", pods-1)
	want := fmt.Sprintf("%d rules in the distinct attachments of this node, at most %d", pods*PolicyMaxRules, polMaxPrefixes)
	var pe *nos.PathError
	if !errors.As(err, &pe) || !errors.Is(err, nos.ErrInvalid) || pe.Path != path || !strings.Contains(err.Error(), want) {
		t.Fatalf("commit: err = %v, want invalid at %s: %s", err, path, want)
	}
	if h.core.Revision() != rev {
		t.Fatalf("a refused commit made revision %d", h.core.Revision())
	}
}
