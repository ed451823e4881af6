package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestPolicyOneEntryChangeCompilesOneEntry: a gNMI Set that flips one
// entry of a 500-entry set attached to a pod compiles that entry once
// (plus the tag-selector entry, always compiled), not the set once in
// validation and again in apply; removing an entry and writing it back
// compile no more; a Set that changes an address group
// compiles the entries that name it again. After each, the policy the
// reconciler programs is the one a full compile of the running
// configuration gives.
func TestPolicyOneEntryChangeCompilesOneEntry(t *testing.T) {
	requireRoot(t)
	const entries = 500
	h := &coreHost{ns: newNS(t, "host")}
	h.startFresh(t)
	h.commit(t, func(d *gen.Device) error {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("65000:1")
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
		pc := d.GetOrCreateInterfaces().GetOrCreateInterface("pa").GetOrCreateConfig()
		pc.Name, pc.Type, pc.NetworkInstance = ygot.String("pa"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		pc.Ipv4Address = ygot.String("10.1.0.2/32")
		pc.GetOrCreatePod().PeerMacAddress = ygot.String("02:00:00:00:01:02")
		acl := d.GetOrCreateAcl()
		g := acl.GetOrCreateAddressGroups().GetOrCreateAddressGroup("g")
		g.GetOrCreateConfig().Name, g.GetOrCreateConfig().Prefix = ygot.String("g"), []string{"10.9.0.0/16"}
		acl.GetOrCreateTagKeys().GetOrCreateTagKey("app").GetOrCreateConfig().Name = ygot.String("app")
		set := acl.GetOrCreateAclSets().GetOrCreateAclSet("big")
		set.GetOrCreateConfig().Name = ygot.String("big")
		for i := range entries {
			seq := uint32(10 + 10*i)
			e := set.GetOrCreateAclEntries().GetOrCreateAclEntry(seq).GetOrCreateConfig()
			e.SequenceId, e.Protocol, e.DestinationPort = ygot.Uint32(seq), ygot.Uint8(6), ygot.Uint16(uint16(1000+i))
			e.SourceAddress = ygot.String(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))
			e.Action = gen.IsthmusAcl_AclAction_ACCEPT
		}
		grouped := set.GetOrCreateAclEntries().GetOrCreateAclEntry(1).GetOrCreateConfig()
		grouped.SequenceId, grouped.SourceAddressGroup = ygot.Uint32(1), ygot.String("g")
		grouped.Action = gen.IsthmusAcl_AclAction_ACCEPT
		tagged := set.GetOrCreateAclEntries().GetOrCreateAclEntry(2).GetOrCreateConfig()
		tagged.SequenceId, tagged.SourceTagSelector = ygot.Uint32(2), []string{"app=web"}
		tagged.Action = gen.IsthmusAcl_AclAction_ACCEPT
		ac := d.GetOrCreateInterfaces().GetOrCreateInterface("pa").GetOrCreateAcl().GetOrCreateConfig()
		ac.EgressAclSet, ac.EgressDefaultAction = []string{"big"}, gen.IsthmusAcl_AclAction_DROP
		return nil
	})
	set := func(path, js string) int64 {
		t.Helper()
		p, err := ygot.StringToStructuredPath(path)
		if err != nil {
			t.Fatal(err)
		}
		req := &gpb.SetRequest{Update: []*gpb.Update{{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}}}
		if js == "" {
			req = &gpb.SetRequest{Delete: []*gpb.Path{p}}
		}
		before := h.rec.pcache.entriesCompiled()
		if err := h.ns.do(func() error {
			_, err := h.core.Set(context.Background(), "test", req)
			return err
		}); err != nil {
			t.Fatalf("set %s: %v", path, err)
		}
		return h.rec.pcache.entriesCompiled() - before
	}
	matchesFull := func(what string) policyIntent {
		t.Helper()
		want, err := policyOf(h.core.Config())
		if err != nil {
			t.Fatal(err)
		}
		h.rec.mu.Lock()
		got := h.rec.policy
		h.rec.mu.Unlock()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after %s the programmed policy differs from a full compile of the running configuration", what)
		}
		return got
	}
	rule := func(p policyIntent, entry string) PolicyRule {
		t.Helper()
		for _, r := range p.Interfaces["pa"].Egress.Rules {
			if r.Entry == entry {
				return r
			}
		}
		t.Fatalf("no rule of entry %s", entry)
		return PolicyRule{}
	}

	// The flip: the entry itself and the tag-selector entry.
	n := set("/acl/acl-sets/acl-set[name=big]/acl-entries/acl-entry[sequence-id=2500]/config/action", `"DROP"`)
	if n != 2 {
		t.Errorf("flipping one entry of %d compiled %d entries, want 2 (it and the tag-selector entry)", entries+2, n)
	}
	if r := rule(matchesFull("the flip"), "big/2500"); r.Action != PolicyDrop {
		t.Errorf("entry big/2500 has action %v after the flip, want drop", r.Action)
	}

	// The entry removed (only the tag-selector entry compiled), then
	// written back (it and the tag-selector entry).
	const entry = "/acl/acl-sets/acl-set[name=big]/acl-entries/acl-entry[sequence-id=2500]"
	if n := set(entry, ""); n != 1 {
		t.Errorf("removing one entry compiled %d entries, want 1 (the tag-selector entry)", n)
	}
	matchesFull("the removal")
	if n := set(entry, `{"sequence-id":2500,"config":{"sequence-id":2500,"protocol":6,"destination-port":1249,"action":"ACCEPT"}}`); n != 2 {
		t.Errorf("adding one entry compiled %d entries, want 2 (it and the tag-selector entry)", n)
	}
	matchesFull("the entry written back")

	// The address group: the entry naming it and the tag-selector entry.
	n = set("/acl/address-groups/address-group[name=g]/config/prefix", `["10.8.0.0/16"]`)
	if n != 2 {
		t.Errorf("changing the address group compiled %d entries, want 2 (the entry naming it and the tag-selector entry)", n)
	}
	if r := rule(matchesFull("the group change"), "big/1"); !reflect.DeepEqual(r.Sources, []netip.Prefix{netip.MustParsePrefix("10.8.0.0/16")}) {
		t.Errorf("entry big/1 matches sources %v after the group change, want [10.8.0.0/16]", r.Sources)
	}
}
