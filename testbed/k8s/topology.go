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

// APIServerPort is kube-apiserver's secure port: 443, the port of the
// kubernetes Service, because the Service's address is the control-plane
// node's too (KubernetesServiceIP).
const APIServerPort = 443

// KubernetesServiceIP is the ClusterIP of the kubernetes Service (the first
// address of ServiceCIDR), through which in-cluster clients such as
// isthmus-controller reach the API. The cluster has no kube-proxy (this
// machine has no iptables or nft), so the control-plane node holds the
// address itself and c1 and c2 route it there.
var KubernetesServiceIP = netip.MustParseAddr("10.96.0.1")

// Topology returns the mission topology with the control-plane node added
// to the cloud VPC: a namespace on vpcgw's bridge, next to c1 and c2, which
// also holds the kubernetes Service's address (c1 and c2 route it there).
func Topology() *testbed.Topology {
	t := testbed.Mission()
	t.Name = "mission-k8s"
	for i := range t.Nodes {
		if n := &t.Nodes[i]; n.Name == "c1" || n.Name == "c2" {
			n.Routes = append(n.Routes, testbed.Route{To: KubernetesServiceIP.String() + "/32", Via: ControlPlaneAddr.String()})
		}
	}
	t.Nodes = append(t.Nodes, testbed.Node{
		Name: ControlPlaneNode, Role: testbed.RoleRouter, Site: "cloud",
		Underlay:  ControlPlaneAddr.String(),
		Loopbacks: []string{KubernetesServiceIP.String() + "/32"},
		Routes:    []testbed.Route{{To: "default", Via: "10.10.0.1"}},
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
