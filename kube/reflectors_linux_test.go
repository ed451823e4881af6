package kube_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/kubetest"
)

// reflectorNeighbors reads the BGP neighbors of a reflector's default
// instance.
func reflectorNeighbors(rr *kubetest.Node) (map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor, error) {
	nis, err := rr.NetworkInstances()
	if err != nil {
		return nil, err
	}
	nbs := nis["default"].GetProtocols().GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors()
	if nbs == nil {
		return nil, nil
	}
	return nbs.Neighbor, nil
}

// TestRouteReflectorClients: a route reflector (isthmusd role rr) found by
// its pod's labels gets every cluster node as a passive route-reflector
// client; a new Node adds one, a deleted Node removes it, and the
// reflector's own gateway neighbor stays.
func TestRouteReflectorClients(t *testing.T) {
	e := newEnv(t, 2)
	rr := kubetest.StartReflector(t, "rr-0", testAS)
	// The gateway peer of the reflector's startup config: not the
	// controller's.
	gw, _ := ygot.StringToStructuredPath("/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp/neighbors/neighbor[neighbor-address=192.0.2.9]")
	js := `{"neighbor-address":"192.0.2.9","config":{"neighbor-address":"192.0.2.9","peer-as":65001,"description":"data center gateway"}}`
	if _, err := rr.Client().Set(rr.Context(), &gpb.SetRequest{Replace: []*gpb.Update{{Path: gw, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}}}); err != nil {
		t.Fatalf("add gateway neighbor: %v", err)
	}
	e.createReflectorPod("rr-0", e.nodes[0].Name, rr.Addr.String())

	cfg := e.config("a")
	cfg.ReflectorSelector = "app=isthmus-rr"
	cfg.ReflectorNamespace = "default"
	cfg.ReflectorGNMIPort = kubetest.GNMIPort
	e.runController(cfg)

	want := func(nodes ...*kubetest.Node) {
		t.Helper()
		var addrs []string
		for _, nd := range nodes {
			addrs = append(addrs, nd.Addr.String())
		}
		addrs = append(addrs, "192.0.2.9")
		slices.Sort(addrs)
		eventually(t, 30*time.Second, func() (bool, string) {
			nbs, err := reflectorNeighbors(rr)
			if err != nil {
				return false, err.Error()
			}
			got := slices.Sorted(maps.Keys(nbs))
			if !slices.Equal(got, addrs) {
				return false, fmt.Sprintf("reflector neighbors %v, want %v", got, addrs)
			}
			for _, nd := range nodes {
				nb := nbs[nd.Addr.String()]
				if nb.GetConfig().GetPeerAs() != testAS || !nb.GetTransport().GetConfig().GetPassiveMode() ||
					!nb.GetRouteReflector().GetConfig().GetRouteReflectorClient() {
					return false, fmt.Sprintf("client %s: %+v %+v %+v", nd.Addr, nb.GetConfig(), nb.GetTransport().GetConfig(), nb.GetRouteReflector().GetConfig())
				}
			}
			if nbs["192.0.2.9"].GetConfig().GetPeerAs() != 65001 {
				return false, "gateway neighbor changed"
			}
			return true, ""
		})
	}
	want(e.nodes...)

	extra := kubetest.StartNodes(t, "extra", 1)[0]
	extra.StartBGP(t, testAS)
	// The controller writes the Node's condition as soon as it sees it:
	// the address goes in with retries on conflict.
	ctx := context.Background()
	if _, err := e.c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: extra.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := e.c.Client.CoreV1().Nodes().Get(ctx, extra.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: extra.Addr.String()}}
		_, err = e.c.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want(append(slices.Clone(e.nodes), extra)...)

	if err := e.c.Client.CoreV1().Nodes().Delete(ctx, e.nodes[1].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want(e.nodes[0], extra)
}

// createReflectorPod registers a running host-network reflector pod on
// node, whose host address is hostIP.
func (e *env) createReflectorPod(name, node, hostIP string) {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.c.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "isthmus-rr"}},
		Spec: corev1.PodSpec{NodeName: node, HostNetwork: true, Containers: []corev1.Container{{
			Name: "isthmusd", Image: "isthmus.dev/isthmusd:0", ImagePullPolicy: corev1.PullNever,
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP = hostIP
	p.Status.HostIPs = []corev1.HostIP{{IP: hostIP}}
	p.Status.PodIP = hostIP
	p.Status.PodIPs = []corev1.PodIP{{IP: hostIP}}
	if _, err := e.c.Client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// withReflector joins the env's first two nodes through a real route
// reflector, rr-0, over the host underlay (its pod on the first node), and
// returns the controller configuration that peers every node with it.
func (e *env) withReflector(t *testing.T) kube.Config {
	t.Helper()
	n0, n1 := e.nodes[0], e.nodes[1]
	rr := kubetest.StartReflector(t, "rr-0", testAS)
	kubetest.Connect(t, n0, n1, rr)
	n0.UseUnderlay(t)
	n1.UseUnderlay(t)
	e.createReflectorPod("rr-0", n0.Name, rr.Addr.String())
	cfg := e.config("a")
	cfg.RouteReflectors = []netip.Addr{rr.Addr}
	cfg.ReflectorSelector, cfg.ReflectorNamespace, cfg.ReflectorGNMIPort = "app=isthmus-rr", "default", kubetest.GNMIPort
	return cfg
}
