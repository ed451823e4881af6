package kube

import (
	"fmt"
	"maps"
	"testing"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// TestRenderMapsNamespaces checks that every node whose network VRF is on
// it maps the network's namespaces to that VRF.
func TestRenderMapsNamespaces(t *testing.T) {
	cfg := &Config{ExcludedNamespaces: []string{"kube-system"}}
	s := snapshot{
		networks:   []*v1alpha1.VirtualNetwork{vn("red", 1, 1, "65000:1", "10.1.0.0/16")},
		namespaces: []namespaceInfo{{name: "shop", label: "red", labelled: true}, {name: "plain"}, {name: "kube-system", label: "red", labelled: true}},
		nodes:      nodes(2),
	}
	p := render(cfg, s)
	for name, in := range p.nodes {
		if want := map[string]string{"shop": "red"}; !maps.Equal(in.namespaces, want) {
			t.Errorf("%s: namespaces %v, want %v", name, in.namespaces, want)
		}
	}
}

// TestSetRequestNamespaceOrder checks that a node never holds a mapping to
// a VRF it does not hold: mappings go before their VRF and come after it,
// also when a node far behind is configured in several requests.
func TestSetRequestNamespaceOrder(t *testing.T) {
	v := func(n string) vrfIntent {
		return vrfIntent{network: n, rd: "1.1.1.1:1", encap: v1alpha1.MPLSOverUDP, pools: []string{"10.0.0.0/26"}}
	}
	have := nodeConfig{vrfs: map[string]vrfIntent{"a": v("a")}, namespaces: map[string]string{"x": "a", "y": "a"}}
	want := nodeIntent{vrfs: map[string]vrfIntent{"b": v("b")}, namespaces: map[string]string{"x": "b", "z": "gone"}}
	req, next, err := setRequest(have, want)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, d := range req.Delete {
		ops = append(ops, "delete "+d.Elem[len(d.Elem)-1].Key["name"])
	}
	for _, u := range req.Replace {
		ops = append(ops, "replace "+u.Path.Elem[len(u.Path.Elem)-1].Key["name"])
	}
	if got, want := fmt.Sprint(ops), "[delete x delete y delete a replace b replace x]"; got != want {
		t.Errorf("ops %s, want %s", got, want)
	}
	if !maps.Equal(next.namespaces, map[string]string{"x": "b"}) {
		t.Errorf("next namespaces %v", next.namespaces)
	}
	if req, _, _ := setRequest(next, want); req != nil {
		t.Errorf("nothing changed but %v", req)
	}

	// Far behind: each request holds every VRF its mappings name.
	many := nodeIntent{vrfs: map[string]vrfIntent{}, namespaces: map[string]string{}}
	for i := range 100 {
		n := fmt.Sprintf("v%03d", i)
		many.vrfs[n] = v(n)
		many.namespaces["ns-"+n] = n
	}
	have = nodeConfig{vrfs: map[string]vrfIntent{}, namespaces: map[string]string{}}
	for sets := 0; ; sets++ {
		req, next, err := setRequest(have, many)
		if err != nil {
			t.Fatal(err)
		}
		if req == nil {
			break
		}
		if sets > 10 {
			t.Fatal("no convergence")
		}
		for ns, vrf := range next.namespaces {
			if _, ok := next.vrfs[vrf]; !ok {
				t.Fatalf("request %d maps %s to %s before the VRF is there", sets, ns, vrf)
			}
		}
		have = next
	}
	if !maps.Equal(have.namespaces, many.namespaces) {
		t.Errorf("converged to %d mappings, want %d", len(have.namespaces), len(many.namespaces))
	}
}
