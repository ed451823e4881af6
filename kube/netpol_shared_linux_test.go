package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// TestNetworkPolicySharedRoutes: networks red and blue import each
// other's route targets, so a pod of red on one node reaches a pod of
// blue on the other with its own address (routes through a real route
// reflector, traffic through the eBPF forwarders and the tunnel). A
// NetworkPolicy of blue allowing namespace front (red) on TCP 80 gives
// blue's node the red pod as a tagged group scoped to blue, where the
// selector is resolved: the red pod reaches TCP 80 and nothing else.
func TestNetworkPolicySharedRoutes(t *testing.T) {
	e := newEnv(t, 2)
	n0, n1 := e.nodes[0], e.nodes[1]
	cfg := e.withReflector(t)
	e.runController(cfg)
	red, blue := network("red", 303, "65000:303", "10.80.0.0/16"), network("blue", 304, "65000:304", "10.81.0.0/16")
	red.Spec.ImportRouteTargets = append(red.Spec.ImportRouteTargets, "65000:304")
	blue.Spec.ImportRouteTargets = append(blue.Spec.ImportRouteTargets, "65000:303")
	e.mustCreateNetwork(red)
	e.mustCreateNetwork(blue)
	e.createNamespace("front", map[string]string{v1alpha1.NetworkLabel: "red"})
	e.createNamespace("back", map[string]string{v1alpha1.NetworkLabel: "blue"})
	e.waitVRF(e.nodes, "red", true, 30*time.Second)
	e.waitVRF(e.nodes, "blue", true, 30*time.Second)
	e.waitNamespaceMapping("front", "red", 20*time.Second)
	e.waitNamespaceMapping("back", "blue", 20*time.Second)
	web := e.attachPod(n1, netpoltest.NewPod("front", "web", netip.Addr{}))
	db := e.attachPod(n0, netpoltest.NewPod("back", "db", netip.Addr{}))
	db.Serve(t, 80)
	db.Serve(t, 81)
	ctx := context.Background()
	probe := func(proto string, port int, want bool, d time.Duration) {
		t.Helper()
		eventually(t, d, func() (bool, string) {
			answer, err := web.Probe(ctx, proto, db.Addr, port, 400*time.Millisecond)
			if err != nil && err != kubetest.ErrNoAnswer {
				t.Fatalf("probe %s %s:%d: %v", proto, db.Addr, port, err)
			}
			got := err == nil && answer == "back/db"
			return got == want, fmt.Sprintf("front/web → back/db %s/%d: answered %v (%q), want %v", proto, port, got, answer, want)
		})
	}
	// Across the networks before any policy (routes over BGP).
	probe("tcp", 81, true, 30*time.Second)

	p80 := intstr.FromInt32(80)
	tcp := corev1.ProtocolTCP
	pol := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "back", Name: "from-front"},
		Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "front"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p80}},
			}},
		}}
	if _, err := e.c.Client.NetworkingV1().NetworkPolicies("back").Create(ctx, pol, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		pc, err := readPolicyConfig(n0)
		if err != nil {
			return false, err.Error()
		}
		g := pc.acl.GetAddressGroups().GetAddressGroup("k8s.pod/front/web:blue")
		if g.GetConfig().GetNetworkInstance() != "blue" || !slices.Equal(g.GetConfig().GetPrefix(), []string{web.Addr.String() + "/32"}) ||
			groupTagsOf(g.GetTags())["k8s.ns/kubernetes.io/metadata.name"] != "front" {
			return false, fmt.Sprintf("group of front/web in blue on %s: %+v tags %v", n0.Name, g.GetConfig(), groupTagsOf(g.GetTags()))
		}
		return len(pc.pods["back/db"].GetAcl().GetConfig().GetIngressAclSet()) == 1, "back/db has no ingress set attached"
	})
	probe("tcp", 81, false, 5*time.Second)
	probe("tcp", 80, true, 5*time.Second)
	probe("udp", 80, false, 5*time.Second)
}
