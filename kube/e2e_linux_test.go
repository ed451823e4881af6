package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
)

// TestNetworkLifecycle: a VirtualNetwork and a namespace labelled with it
// become one VRF on each of three real isthmusd nodes (per-node RD, a
// distinct block each, the route reflector as BGP neighbor) and status says
// so; each node maps the namespace to the VRF under /cni/namespaces for its
// CNI daemon, and drops a namespace's mapping once it is deleted; deleting
// the network keeps it on the nodes while a pod uses it, and
// removes it everywhere once the pod is gone.
func TestNetworkLifecycle(t *testing.T) {
	e := newEnv(t, 3)
	e.runController(e.config("a"))
	e.mustCreateNetwork(network("red", 100, "65000:100", "10.1.0.0/16"))
	e.createNamespace("shop", map[string]string{v1alpha1.NetworkLabel: "red"})

	vrfs := e.waitVRF(e.nodes, "red", true, 30*time.Second)
	var pools []string
	for _, nd := range e.nodes {
		v := vrfs[nd.Name]
		if got, want := v.GetConfig().GetRouteDistinguisher(), fmt.Sprintf("%s:100", nd.Addr); got != want {
			t.Errorf("%s: rd %s, want %s", nd.Name, got, want)
		}
		if v.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF ||
			!slices.Equal(v.GetConfig().ImportRouteTarget, []string{"65000:100"}) ||
			v.GetConfig().GetEncapsulation() != gen.IsthmusTypes_Encapsulation_MPLS_OVER_UDP {
			t.Errorf("%s: vrf config %+v", nd.Name, v.GetConfig())
		}
		if v.AddressPools == nil || len(v.AddressPools.AddressPool) != 1 {
			t.Fatalf("%s: pools %+v, want one", nd.Name, v.AddressPools)
		}
		for p := range v.AddressPools.AddressPool {
			pp := netip.MustParsePrefix(p)
			if pp.Bits() != 24 || !netip.MustParsePrefix("10.1.0.0/16").Contains(pp.Addr()) {
				t.Errorf("%s: block %s not a /24 of 10.1.0.0/16", nd.Name, p)
			}
			pools = append(pools, p)
		}
		nis, err := nd.NetworkInstances()
		if err != nil {
			t.Fatal(err)
		}
		nb := nis["default"].GetProtocols().GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors().GetNeighbor("192.0.2.1")
		if nb.GetConfig().GetPeerAs() != testAS {
			t.Errorf("%s: route reflector neighbor %+v", nd.Name, nb.GetConfig())
		}
	}
	slices.Sort(pools)
	if len(slices.Compact(pools)) != 3 {
		t.Errorf("blocks not distinct: %v", pools)
	}
	vn := e.waitCondition("red", v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllNodesReady)
	if vn.Status.ReadyNodes != 3 || vn.Status.Nodes != 3 || len(vn.Status.Blocks) != 3 || !slices.Equal(vn.Status.Namespaces, []string{"shop"}) {
		t.Errorf("status %+v", vn.Status)
	}

	for _, nd := range e.nodes {
		e.waitNodeCondition(nd.Name, corev1.ConditionTrue, kube.NodeReasonConfigured)
	}

	e.waitNamespaceMapping("shop", "red", 30*time.Second)
	e.createNamespace("cart", map[string]string{v1alpha1.NetworkLabel: "red"})
	e.waitNamespaceMapping("cart", "red", 30*time.Second)
	e.deleteNamespace("cart")
	e.waitNamespaceMapping("cart", "", 30*time.Second)
	e.waitNamespaceMapping("shop", "red", time.Second)

	e.createPod("shop", "web", e.nodes[0].Name)
	e.deleteNetwork("red")
	e.waitCondition("red", v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInUseDeleting)
	e.waitVRF(e.nodes, "red", true, time.Second)

	e.deletePod("shop", "web")
	e.waitVRF(e.nodes, "red", false, 30*time.Second)
	e.waitNamespaceMapping("shop", "", time.Second)
	eventually(t, 20*time.Second, func() (bool, string) {
		return e.network("red") == nil, "network red still exists (finalizer)"
	})
}

// namespaceMappings returns a node's /cni/namespaces: namespace → VRF.
func namespaceMappings(nd *kubetest.Node) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(nd.Context(), 5*time.Second)
	defer cancel()
	p, err := ygot.StringToStructuredPath("/cni/namespaces")
	if err != nil {
		return nil, err
	}
	resp, err := nd.Client().Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
	if status.Code(err) == codes.NotFound {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	var nss gen.IsthmusCni_Cni_Namespaces
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			if err := gen.Unmarshal(u.GetVal().GetJsonIetfVal(), &nss); err != nil {
				return nil, err
			}
		}
	}
	out := map[string]string{}
	for name, ns := range nss.Namespace {
		out[name] = ns.GetConfig().GetNetworkInstance()
	}
	return out, nil
}

// waitNamespaceMapping waits until every node maps Kubernetes namespace ns
// to vrf under /cni/namespaces ("" means no mapping).
func (e *env) waitNamespaceMapping(ns, vrf string, d time.Duration) {
	e.t.Helper()
	eventually(e.t, d, func() (bool, string) {
		for _, nd := range e.nodes {
			m, err := namespaceMappings(nd)
			if err != nil {
				return false, fmt.Sprintf("read %s: %v", nd.Name, err)
			}
			if m[ns] != vrf {
				return false, fmt.Sprintf("%s maps namespace %s to %q, want %q", nd.Name, ns, m[ns], vrf)
			}
		}
		return true, ""
	})
}

// deleteNamespace deletes a namespace and, since no namespace controller
// runs, clears its finalizers so that it goes at once.
func (e *env) deleteNamespace(name string) {
	e.t.Helper()
	ctx := context.Background()
	nss := e.c.Client.CoreV1().Namespaces()
	if err := nss.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
	ns, err := nss.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		e.t.Fatal(err)
	}
	ns.Spec.Finalizers = nil
	if _, err := nss.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	eventually(e.t, 10*time.Second, func() (bool, string) {
		_, err := nss.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprintf("namespace %s still exists: %v", name, err)
	})
}
