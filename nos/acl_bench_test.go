package nos

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// BenchmarkSetOneACLEntry measures one gNMI Set that changes one entry of
// an ACL set of 10,000 entries, attached to a pod interface: edit,
// validate, persist (bbolt, fsync included), diff, mirror and publish.
// "flip" sets the last entry's action (DROP, then ACCEPT, alternately);
// "remove" deletes it and "add" writes it again, alternately. It reports
// the median and the 99th percentile.
func BenchmarkSetOneACLEntry(b *testing.B) {
	const n = 10000
	c := benchACLCore(b, n)
	last := fmt.Sprintf("/acl/acl-sets/acl-set[name=bench]/acl-entries/acl-entry[sequence-id=%d]", 10*n)
	b.Run("flip", func(b *testing.B) {
		benchSets(b, c, func(i int) *gpb.SetRequest {
			action := `"DROP"`
			if i%2 == 1 {
				action = `"ACCEPT"`
			}
			return &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(b, last+"/config/action", action)}}
		})
		// Back to ACCEPT for the next run, untimed.
		if _, err := c.Set(context.Background(), "bench", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(b, last+"/config/action", `"ACCEPT"`)}}); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("remove-add", func(b *testing.B) {
		entry := fmt.Sprintf(`{"sequence-id":%d,"config":{"sequence-id":%d,"source-address":"10.1.0.0/24","protocol":17,"destination-port":5201,"action":"ACCEPT"}}`, 10*n, 10*n)
		benchSets(b, c, func(i int) *gpb.SetRequest {
			if i%2 == 0 {
				return &gpb.SetRequest{Delete: []*gpb.Path{mustPath(b, last)}}
			}
			return &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(b, last, entry)}}
		})
		if _, err := c.Set(context.Background(), "bench", &gpb.SetRequest{Update: []*gpb.Update{jsonUpdate(b, last, entry)}}); err != nil {
			b.Fatal(err)
		}
	})
}

// benchACLCore returns a started core holding one VRF, a pod interface
// and an ACL set of n entries on its egress.
func benchACLCore(b *testing.B, n int) *Core {
	ctx := context.Background()
	st, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	c, err := New(st)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	_, err = c.Commit(ctx, "bench", func(d *gen.Device) error {
		aclConfig(d, n)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	return c
}

// aclConfig adds to d VRF red with pod interface pod1 whose egress has
// ACL set "bench" of n entries (sequence 10, 20, ... 10n; the last
// accepts UDP to port 5201).
func aclConfig(d *gen.Device, n int) {
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	nc := ni.GetOrCreateConfig()
	nc.Name, nc.Type = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF
	nc.RouteDistinguisher = ygot.String("65000:1")
	nc.ImportRouteTarget, nc.ExportRouteTarget = []string{"65000:1"}, []string{"65000:1"}
	ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
	intf := d.GetOrCreateInterfaces().GetOrCreateInterface("pod1")
	ic := intf.GetOrCreateConfig()
	ic.Name, ic.Type, ic.NetworkInstance = ygot.String("pod1"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
	ic.Ipv4Address = ygot.String("10.1.0.2/32")
	set := d.GetOrCreateAcl().GetOrCreateAclSets().GetOrCreateAclSet("bench")
	set.GetOrCreateConfig().Name = ygot.String("bench")
	for i := range n - 1 {
		seq := uint32(10 + 10*i)
		ec := set.GetOrCreateAclEntries().GetOrCreateAclEntry(seq).GetOrCreateConfig()
		ec.SequenceId = ygot.Uint32(seq)
		ec.SourceAddress = ygot.String(fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))
		ec.DestinationAddress = ygot.String("10.1.0.0/16")
		ec.Protocol, ec.DestinationPort = ygot.Uint8(6), ygot.Uint16(uint16(1000+i%50000))
		ec.Action = gen.IsthmusAcl_AclAction_ACCEPT
	}
	seq := uint32(10 * n)
	ec := set.GetOrCreateAclEntries().GetOrCreateAclEntry(seq).GetOrCreateConfig()
	ec.SequenceId = ygot.Uint32(seq)
	ec.SourceAddress = ygot.String("10.1.0.0/24")
	ec.Protocol, ec.DestinationPort = ygot.Uint8(17), ygot.Uint16(5201)
	ec.Action = gen.IsthmusAcl_AclAction_ACCEPT
	ac := intf.GetOrCreateAcl().GetOrCreateConfig()
	ac.EgressAclSet, ac.EgressDefaultAction = []string{"bench"}, gen.IsthmusAcl_AclAction_DROP
}
