package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPolicyNodeNamespaces: a pod isolated for egress (it may send UDP to
// port 53, nothing else) in a VRF with host access and SNAT still answers
// its own node's TCP connection (the kubelet's probe: the node's packets to
// the pod create no flow entry, so the pod's SYN-ACK is a first packet of
// its egress) and reaches the node itself; it reaches neither another pod
// of its VRF nor another host through SNAT, and the state counts both the
// node's packets and the refused ones. The set is named as the kube
// controller names its sets (with slashes): its entry's counter is
// published too.
func TestPolicyNodeNamespaces(t *testing.T) {
	requireRoot(t)
	h, other := gatewayHost(t)
	isolated := addPod(t, h.ns, "pred", 1, netip.MustParseAddr("10.1.0.2"), podMTU)
	peer := addPod(t, h.ns, "pred2", 2, netip.MustParseAddr("10.1.0.3"), podMTU)
	h.startFresh(t)
	h.commit(t, edits(
		gatewayUnderlay,
		func(d *gen.Device) { podInterface(d, "pred2", "red", "10.1.0.3/32", peer) },
		extVRF("red", "65000:1", "pred", isolated, func(c *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config) {
			c.DefaultPodNetwork, c.PortMin, c.PortMax = ygot.Bool(true), ygot.Uint16(20000), ygot.Uint16(20999)
		}),
	))
	serveWho(t, isolated.ns, "10.1.0.2:8080")
	serveWho(t, peer.ns, "10.1.0.3:8080")
	serveWho(t, other, "192.0.2.254:80")
	serveWho(t, h.ns, "192.0.2.1:10250")
	// Without policy every path is open.
	for _, to := range []string{"192.0.2.254:80", "10.1.0.3:8080", "192.0.2.1:10250"} {
		if _, err := askWho(isolated.ns, to); err != nil {
			t.Fatalf("pod to %s before any policy: %v", to, err)
		}
	}

	// Named as the kube controller names its sets: entry counters of a
	// set whose name holds slashes are published too.
	const setName = "k8s/red/pred/egress"
	h.commit(t, func(d *gen.Device) error {
		set := d.GetOrCreateAcl().GetOrCreateAclSets().GetOrCreateAclSet(setName)
		set.GetOrCreateConfig().Name = ygot.String(setName)
		e := set.GetOrCreateAclEntries().GetOrCreateAclEntry(10).GetOrCreateConfig()
		e.SequenceId, e.Protocol, e.DestinationPort = ygot.Uint32(10), ygot.Uint8(17), ygot.Uint16(53)
		e.Action = gen.IsthmusAcl_AclAction_ACCEPT
		acl := d.GetOrCreateInterfaces().GetOrCreateInterface("pred").GetOrCreateAcl().GetOrCreateConfig()
		acl.EgressAclSet, acl.EgressDefaultAction = []string{setName}, gen.IsthmusAcl_AclAction_DROP
		return nil
	})

	// The node reaches the pod (the probe), and the pod the node.
	if said, err := askWho(h.ns, "10.1.0.2:8080"); err != nil || !strings.HasPrefix(said, "192.0.2.1:") {
		t.Errorf("node to the isolated pod: %q, %v; want a connection from 192.0.2.1", said, err)
	}
	if said, err := askWho(isolated.ns, "192.0.2.1:10250"); err != nil || !strings.HasPrefix(said, "10.1.0.2:") {
		t.Errorf("isolated pod to its node: %q, %v; want a connection from 10.1.0.2", said, err)
	}
	// Nothing else: not another host (through SNAT), not another pod.
	for _, to := range []string{"192.0.2.254:80", "10.1.0.3:8080"} {
		if said, err := askWho(isolated.ns, to); err == nil {
			t.Errorf("isolated pod reached %s (it saw %q)", to, said)
		}
	}

	// What the set allows passes and is counted on its entry.
	must(t, isolated.ns.do(func() error {
		c, err := net.Dial("udp4", "192.0.2.254:53")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("query"))
		return err
	}))

	must(t, h.rec.PublishState())
	must(t, h.rec.publishPolicy())
	err := h.core.Read(func(_, state *gen.Device) error {
		st := nos.Interfaces(state)["pred"].GetAcl().GetState()
		if st.GetEgressNodePackets() == 0 || st.GetEgressDeniedPackets() == 0 {
			return fmt.Errorf("interface acl state: %d packets to the node, %d denied; want both counted", st.GetEgressNodePackets(), st.GetEgressDeniedPackets())
		}
		if es := state.GetAcl().GetAclSets().GetAclSet(setName).GetAclEntries().GetAclEntry(10).GetState(); es.GetMatchedPackets() == 0 {
			return fmt.Errorf("entry %s/10: matched-packets %d, want the DNS query counted", setName, es.GetMatchedPackets())
		}
		return nil
	})
	if err != nil {
		t.Errorf("state: %v", err)
	}
}
