package k8s

import (
	"fmt"
	"net/netip"

	"github.com/isthmus-net/isthmus/testbed"
)

// ControlPlaneNode is the topology node the control plane runs in.
const ControlPlaneNode = "k8s"

// ControlPlaneAddr is the control plane's address on the VPC segment; the
// API server listens on it (port APIServerPort).
var ControlPlaneAddr = netip.MustParseAddr("10.10.0.5")

// APIServerPort is kube-apiserver's secure port.
const APIServerPort = 6443

// Topology returns the mission topology with the control-plane node added
// to the cloud VPC: a namespace on vpcgw's bridge, next to c1 and c2.
func Topology() *testbed.Topology {
	t := testbed.Mission()
	t.Name = "mission-k8s"
	t.Nodes = append(t.Nodes, testbed.Node{
		Name: ControlPlaneNode, Role: testbed.RoleRouter, Site: "cloud",
		Underlay: ControlPlaneAddr.String(),
		Routes:   []testbed.Route{{To: "default", Via: "10.10.0.1"}},
	})
	t.Links = append(t.Links, testbed.Link{
		A: testbed.End{Node: ControlPlaneNode, Interface: "eth0", Addresses: []string{ControlPlaneAddr.String() + "/24"}},
		B: testbed.End{Node: "vpcgw", Interface: ControlPlaneNode, Bridge: "br0"},
	})
	if err := t.Validate(); err != nil {
		panic(fmt.Sprintf("mission-k8s topology: %v", err))
	}
	return t
}
