package dataplane

import (
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestPolicyAttachmentKeyKeepsSetsApart: set names are free text, so a
// set named "a,b" and the two sets "a" and "b" are different attachments:
// the pod given "a,b" (DROP everything) and the pod given "a" and "b"
// (ACCEPT everything) must not share one compiled attachment.
func TestPolicyAttachmentKeyKeepsSetsApart(t *testing.T) {
	d := &gen.Device{}
	vrf := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red").GetOrCreateConfig()
	vrf.Name, vrf.Type = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF
	sets := d.GetOrCreateAcl().GetOrCreateAclSets()
	for name, action := range map[string]gen.E_IsthmusAcl_AclAction{
		"a,b": gen.IsthmusAcl_AclAction_DROP,
		"a":   gen.IsthmusAcl_AclAction_ACCEPT,
		"b":   gen.IsthmusAcl_AclAction_ACCEPT,
	} {
		s := sets.GetOrCreateAclSet(name)
		s.GetOrCreateConfig().Name = ygot.String(name)
		e := s.GetOrCreateAclEntries().GetOrCreateAclEntry(10).GetOrCreateConfig()
		e.SequenceId, e.Action = ygot.Uint32(10), action
	}
	for name, attached := range map[string][]string{"p1": {"a,b"}, "p2": {"a", "b"}} {
		intf := d.GetOrCreateInterfaces().GetOrCreateInterface(name)
		c := intf.GetOrCreateConfig()
		c.Name, c.Type, c.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		intf.GetOrCreateAcl().GetOrCreateConfig().IngressAclSet = attached
	}
	in, err := policyOf(d)
	if err != nil {
		t.Fatalf("policyOf: %v", err)
	}
	p1, p2 := in.Interfaces["p1"].Ingress, in.Interfaces["p2"].Ingress
	if p1 == nil || p2 == nil {
		t.Fatalf("attachments p1 %v, p2 %v: want both", p1, p2)
	}
	if p1 == p2 {
		t.Fatalf("p1 (set \"a,b\") and p2 (sets \"a\", \"b\") share one attachment: %+v", p1)
	}
	if len(p1.Rules) != 1 || p1.Rules[0].Action != PolicyDrop || p1.Rules[0].Entry != "a,b/10" {
		t.Errorf("p1's rules %+v: want the one DROP entry of \"a,b\"", p1.Rules)
	}
	if len(p2.Rules) != 2 || p2.Rules[0].Action != PolicyAccept || p2.Rules[1].Action != PolicyAccept {
		t.Errorf("p2's rules %+v: want the ACCEPT entries of \"a\" and \"b\"", p2.Rules)
	}
}
