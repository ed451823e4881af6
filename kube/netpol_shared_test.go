package kube

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// TestSharedRoutesPodGroups: networks red and blue share routes (blue
// imports red's route target), green shares none. A policy of blue
// selecting pods of namespace front (red) resolves them in blue's VRF:
// the node gets a tagged group scoped to blue for the front pod on it and
// for the one on the other node (besides the latter's group in red), and
// nothing scoped to green; without sharing, no such group exists.
func TestSharedRoutesPodGroups(t *testing.T) {
	vn := func(name string, imports, exports []string) *networkView {
		return &networkView{accepted: true, vn: &v1alpha1.VirtualNetwork{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.VirtualNetworkSpec{ImportRouteTargets: imports, ExportRouteTargets: exports}}}
	}
	refused := vn("grey", []string{"65000:1"}, []string{"65000:1"})
	refused.accepted = false
	p := plan{networks: map[string]*networkView{
		"red":   vn("red", []string{"65000:1"}, []string{"65000:1"}),
		"blue":  vn("blue", []string{"65000:1", "65000:2"}, []string{"65000:2"}),
		"green": vn("green", []string{"65000:3"}, []string{"65000:3"}),
		"grey":  refused,
	}}
	sharing := routeSharing(p)
	if want := map[string][]string{"red": {"blue"}, "blue": {"red"}}; !maps.EqualFunc(sharing, want, slices.Equal) {
		t.Fatalf("route sharing %v, want %v", sharing, want)
	}

	network := map[string]string{"front": "red", "back": "blue", "other": "green"}
	pod := func(ns, name, node, addr string) *policyPod {
		return &policyPod{namespace: ns, name: name, node: node, addr: netip.MustParseAddr(addr), labels: map[string]string{"app": name}}
	}
	web, web2, db, lone := pod("front", "web", "n1", "10.1.0.2"), pod("front", "web2", "n2", "10.1.1.2"),
		pod("back", "db", "n1", "10.2.0.2"), pod("other", "lone", "n1", "10.3.0.2")
	c := &policyCluster{
		policies: []*networkingv1.NetworkPolicy{np("back", "from-front", sel("app", "db"), nil, []inRule{{
			From: []peer{{NamespaceSelector: selp("kubernetes.io/metadata.name", "front")}}, Ports: npPorts{port(tcp, 5432)}}}, nil)},
		namespaces: map[string]map[string]string{"front": {"kubernetes.io/metadata.name": "front"},
			"back": {"kubernetes.io/metadata.name": "back"}, "other": {"kubernetes.io/metadata.name": "other"}},
		pods: []*policyPod{web, web2, db, lone},
	}
	compiled, errs := compilePolicies(c)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	vrf := func(ns string) (string, bool) { return network[ns], true }
	shared := func(ns string) []string { return sharing[network[ns]] }
	out := renderNodePolicy(c, compiled, "n1", vrf, shared)
	scopes := map[string]string{}
	for name, g := range out.groups {
		if g.GetTags() == nil || g.GetTags().Tag["k8s.pod/app"] == nil {
			t.Errorf("group %s has no pod tags", name)
		}
		scopes[name] = g.GetConfig().GetNetworkInstance() + " " + g.GetConfig().Prefix[0]
	}
	want := map[string]string{
		"k8s.pod/front/web:blue":  "blue 10.1.0.2/32",
		"k8s.pod/front/web2":      "red 10.1.1.2/32",
		"k8s.pod/front/web2:blue": "blue 10.1.1.2/32",
	}
	if !maps.Equal(scopes, want) {
		t.Errorf("groups on n1 (name → network-instance, prefix) %v, want %v", scopes, want)
	}
	// Without route sharing: only the other node's pod, in its own VRF.
	out = renderNodePolicy(c, compiled, "n1", vrf, nil)
	if got := slices.Sorted(maps.Keys(out.groups)); !slices.Equal(got, []string{"k8s.pod/front/web2"}) {
		t.Errorf("groups on n1 without sharing %v, want only k8s.pod/front/web2", got)
	}
}
