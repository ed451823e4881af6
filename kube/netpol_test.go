package kube

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/gen"
)

func TestSubtractPrefixes(t *testing.T) {
	for _, tt := range []struct {
		cidr   string
		except []string
		want   []string
	}{
		{"10.0.0.0/24", nil, []string{"10.0.0.0/24"}},
		{"10.0.0.0/24", []string{"10.0.0.0/24"}, nil},
		{"10.0.0.0/24", []string{"10.0.0.0/16"}, nil},
		{"10.0.0.0/24", []string{"10.0.1.0/24"}, []string{"10.0.0.0/24"}},
		{"10.0.0.0/30", []string{"10.0.0.1/32"}, []string{"10.0.0.0/32", "10.0.0.2/31"}},
		{"10.0.0.0/30", []string{"10.0.0.1/32", "10.0.0.2/32"}, []string{"10.0.0.0/32", "10.0.0.3/32"}},
	} {
		var except []netip.Prefix
		for _, e := range tt.except {
			except = append(except, netip.MustParsePrefix(e))
		}
		var got []string
		for _, p := range subtractPrefixes(netip.MustParsePrefix(tt.cidr), except) {
			got = append(got, p.String())
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s minus %v (-want +got):\n%s", tt.cidr, tt.except, diff)
		}
	}
}

// TestPolicyErrorsIsolateWithoutAllowing: a policy the controller cannot
// translate (a reversed port range) is reported, and the pods it selects
// are still isolated by it, so the error never opens traffic.
func TestPolicyErrorsIsolateWithoutAllowing(t *testing.T) {
	f := testFixture()
	bad := np("x", "reversed", sel("pod", "a"), nil, []inRule{{Ports: npPorts{portRange(tcp, 90, 80)}}}, nil)
	c := &policyCluster{policies: []*networkingv1.NetworkPolicy{bad}, namespaces: map[string]map[string]string{}}
	for _, p := range f.Pods {
		c.pods = append(c.pods, policyPodOf(p))
	}
	compiled, errs := compilePolicies(c)
	if err := errs["x/reversed"]; err == nil || !strings.Contains(err.Error(), "range 90-80") {
		t.Errorf("error %v, want one naming the range 90-80", err)
	}
	for p, pp := range compiled {
		if want := p.namespace == "x" && p.name == "a"; pp.ingressIsolated != want || len(pp.ingress) != 0 {
			t.Errorf("%s/%s: isolated %v with %d rules, want isolated %v with none", p.namespace, p.name, pp.ingressIsolated, len(pp.ingress), want)
		}
	}
}

func TestSelectorOfRefusesUnknownOperator(t *testing.T) {
	_, err := selectorOf(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Near"}}})
	if err == nil || !strings.Contains(err.Error(), `"Near"`) {
		t.Errorf("error %v, want one naming the operator", err)
	}
}

// TestPolicySetRequest: an empty node gets the tag keys, groups, sets and
// its pod interfaces' tags and attachments in one Set; a node that holds
// them gets none; an interface of a pod no longer isolated loses its
// attachment and the set goes.
func TestPolicySetRequest(t *testing.T) {
	f := testFixture()
	pols := []*networkingv1.NetworkPolicy{np("x", "from-y", sel("pod", "a"), nil,
		[]inRule{{From: []peer{{NamespaceSelector: selp("ns", "y")}}}}, nil)}
	c := &policyCluster{policies: pols, namespaces: map[string]map[string]string{}}
	for _, ns := range f.Namespaces {
		c.namespaces[ns.Name] = ns.Labels
	}
	for _, p := range f.Pods {
		pp := policyPodOf(p)
		pp.node = "n1"
		c.pods = append(c.pods, pp)
	}
	compiled, _ := compilePolicies(c)
	want := renderNodePolicy(c, compiled, "n1", func(string) (string, bool) { return "red", true }, nil)
	have := nodePolicyState{ifaces: map[string]podInterface{
		"istxa": {pod: "x/a", tags: map[string]string{}},
		"istxb": {pod: "x/b", tags: map[string]string{}},
		"istgone": {pod: "q/gone", tags: map[string]string{"k8s.pod/pod": "gone"},
			acl: &gen.IsthmusInterfaces_Interfaces_Interface_Acl_Config{IngressAclSet: []string{"k8s/q/gone/ingress"}}},
	}, sets: map[string]*aclSetT{"k8s/q/gone/ingress": {Name: ptr("k8s/q/gone/ingress")}}, groups: map[string]*addrGroupT{}, tagKeys: map[string]bool{}}
	req, pending, err := policySetRequest(have, want)
	if err != nil {
		t.Fatal(err)
	}
	if pending != 7 {
		t.Errorf("pending %d, want 7 (the pods without an interface)", pending)
	}
	var replaced, deleted []string
	for _, u := range req.Replace {
		replaced = append(replaced, pathString(u.Path))
	}
	for _, p := range req.Delete {
		deleted = append(deleted, pathString(p))
	}
	wantReplaced := []string{
		"/acl/tag-keys/tag-key[name=k8s.ns/kubernetes.io/metadata.name]",
		"/acl/tag-keys/tag-key[name=k8s.ns/ns]",
		"/acl/acl-sets/acl-set[name=k8s/x/a/ingress]",
		"/interfaces/interface[name=istxa]/tags",
		"/interfaces/interface[name=istxa]/acl",
		"/interfaces/interface[name=istxb]/tags",
	}
	wantDeleted := []string{
		"/interfaces/interface[name=istgone]/tags",
		"/interfaces/interface[name=istgone]/acl",
		"/acl/acl-sets/acl-set[name=k8s/q/gone/ingress]",
	}
	if diff := cmp.Diff(wantReplaced, replaced); diff != "" {
		t.Errorf("replaced (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantDeleted, deleted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}

	// The node now holds it all: nothing to send.
	applied := nodePolicyState{ifaces: map[string]podInterface{
		"istxa": {pod: "x/a", tags: want.pods["x/a"].tags, acl: aclAttachment(want.pods["x/a"])},
		"istxb": {pod: "x/b", tags: want.pods["x/b"].tags},
	}, sets: want.sets, groups: want.groups, tagKeys: map[string]bool{}}
	for _, k := range want.tagKeys {
		applied.tagKeys[k] = true
	}
	if req, _, err := policySetRequest(applied, want); err != nil || req != nil {
		t.Errorf("second request %v, %v; want none", req, err)
	}
}

func ptr[T any](v T) *T { return &v }

func pathString(p *gpb.Path) string {
	var b strings.Builder
	for _, e := range p.GetElem() {
		b.WriteString("/" + e.GetName())
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range e.GetKey() {
				if !yield(k) {
					return
				}
			}
		}) {
			b.WriteString("[" + k + "=" + e.GetKey()[k] + "]")
		}
	}
	return b.String()
}
