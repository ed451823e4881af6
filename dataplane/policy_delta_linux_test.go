package dataplane

import (
	"context"
	"net/netip"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPolicyUntaggedPodByDelta: pod X accepts only sources without the
// tag quarantine (`!quarantine`, default DROP); a pod Y without tags or
// ACLs attached as the CNI does (CommitEntries of its interface alone,
// the delta path) is such a source at once: its ping reaches X.
func TestPolicyUntaggedPodByDelta(t *testing.T) {
	a, _, _ := newCoreHosts(t, func(i int, d *gen.Device) {
		if i != 0 {
			return
		}
		acl := d.GetOrCreateAcl()
		acl.GetOrCreateTagKeys().GetOrCreateTagKey("quarantine").GetOrCreateConfig().Name = ygot.String("quarantine")
		set := acl.GetOrCreateAclSets().GetOrCreateAclSet("healthy-in")
		set.GetOrCreateConfig().Name = ygot.String("healthy-in")
		e := set.GetOrCreateAclEntries().GetOrCreateAclEntry(10).GetOrCreateConfig()
		e.SequenceId = ygot.Uint32(10)
		e.SourceTagSelector = []string{"!quarantine"}
		e.Action = gen.IsthmusAcl_AclAction_ACCEPT
		ac := d.GetOrCreateInterfaces().GetOrCreateInterface("pred").GetOrCreateAcl().GetOrCreateConfig()
		ac.IngressAclSet = []string{"healthy-in"}
		ac.IngressDefaultAction = gen.IsthmusAcl_AclAction_DROP
	})
	y := addPod(t, a.ns, "pnew", 3, netip.MustParseAddr("10.1.0.3"), podMTU)
	err := a.ns.do(func() error {
		_, err := a.core.CommitEntries(context.Background(), "cni", []*gpb.Path{nos.InterfaceEntry(y.hostIf)}, func(d *gen.Device) error {
			c := d.GetOrCreateInterfaces().GetOrCreateInterface(y.hostIf).GetOrCreateConfig()
			c.Name, c.Type, c.NetworkInstance = ygot.String(y.hostIf), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
			c.Ipv4Address = ygot.String(y.addr.String() + "/32")
			c.Mtu = ygot.Uint16(podMTU)
			c.GetOrCreatePod().PeerMacAddress = ygot.String(y.mac.String())
			return nil
		})
		return err
	})
	must(t, err)
	waitPing(t, y, a.pod.addr, true)
}
