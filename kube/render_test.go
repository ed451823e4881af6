package kube

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

func vn(name string, age int, rd int32, rt string, subnets ...string) *v1alpha1.VirtualNetwork {
	return &v1alpha1.VirtualNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(int64(1000-age), 0))},
		Spec: v1alpha1.VirtualNetworkSpec{
			RouteDistinguisher: v1alpha1.RouteDistinguisher{Number: rd},
			ImportRouteTargets: []string{rt}, ExportRouteTargets: []string{rt},
			Subnets: subnets, BlockSize: 26,
		},
	}
}

func nodes(n int) []nodeInfo {
	var out []nodeInfo
	for i := range n {
		a := netip.AddrFrom4([4]byte{192, 168, 0, byte(i + 1)})
		out = append(out, nodeInfo{name: "n" + string(rune('0'+i)), address: a, gnmi: a.String() + ":9339"})
	}
	return out
}

func TestRenderBlocksAndRDs(t *testing.T) {
	cfg := &Config{RouteReflectors: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, BGPAS: 65000}
	red := vn("red", 10, 100, "65000:100", "10.1.0.0/24")
	// n1 keeps its persisted block; n0 and n2 get the lowest free ones.
	red.Status.Blocks = []v1alpha1.NodeBlock{{Node: "n1", Prefix: "10.1.0.0/26"}, {Node: "gone", Prefix: "10.1.0.64/26"}}
	p := render(cfg, snapshot{networks: []*v1alpha1.VirtualNetwork{red}, nodes: nodes(3)})
	v := p.networks["red"]
	want := map[string]string{"n1": "10.1.0.0/26", "n0": "10.1.0.64/26", "n2": "10.1.0.128/26"}
	if d := cmp.Diff(want, v.blocks); d != "" || !v.blocksChanged {
		t.Fatalf("blocks (-want +got):\n%s changed=%v", d, v.blocksChanged)
	}
	got := p.nodes["n2"]
	wantVRF := vrfIntent{network: "red", rd: "192.168.0.3:100", imports: []string{"65000:100"}, exports: []string{"65000:100"},
		encap: v1alpha1.MPLSOverUDP, pools: []string{"10.1.0.128/26"}}
	if d := cmp.Diff(wantVRF, got.vrfs["red"], cmp.AllowUnexported(vrfIntent{})); d != "" {
		t.Errorf("vrf (-want +got):\n%s", d)
	}
	if len(got.neighbors) != 1 || got.peerAS != 65000 {
		t.Errorf("neighbors %v as %d", got.neighbors, got.peerAS)
	}
	// A fifth /26 does not fit in a /24.
	p = render(cfg, snapshot{networks: []*v1alpha1.VirtualNetwork{vn("red", 10, 100, "65000:100", "10.1.0.0/24")}, nodes: nodes(5)})
	if ex := p.networks["red"].exhausted; len(ex) != 1 || len(p.nodes[ex[0]].vrfs) != 0 {
		t.Errorf("exhausted %v, its node's vrfs %v", ex, p.nodes[ex[0]].vrfs)
	}
}

func TestRenderConflicts(t *testing.T) {
	cfg := &Config{}
	red := vn("red", 10, 100, "65000:100", "10.1.0.0/16")
	blue := vn("blue", 5, 100, "65000:200", "10.2.0.0/16")                             // red's RD number
	green := vn("green", 4, 300, "65000:300", "10.1.5.0/24")                           // overlaps red…
	green.Spec.ImportRouteTargets = append(green.Spec.ImportRouteTargets, "65000:100") // …and imports it
	other := vn("other", 3, 400, "65000:400", "10.1.0.0/16")                           // overlaps, shares nothing
	// An accepted newcomer keeps its number against an older object
	// created in the same second.
	p := render(cfg, snapshot{networks: []*v1alpha1.VirtualNetwork{blue, green, other, red}, nodes: nodes(1)})
	got := map[string]string{}
	for name, v := range p.networks {
		got[name] = v.reason
	}
	want := map[string]string{"red": "", "blue": v1alpha1.ReasonRDConflict, "green": v1alpha1.ReasonSubnetOverlap, "other": ""}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("reasons (-want +got):\n%s", d)
	}
	if _, ok := p.nodes["n0"].vrfs["blue"]; ok {
		t.Error("a refused network is on a node")
	}

	older := vn("older", 20, 100, "65000:900", "10.9.0.0/16")
	red.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue}}
	p = render(cfg, snapshot{networks: []*v1alpha1.VirtualNetwork{older, red}, nodes: nodes(1)})
	if p.networks["red"].reason != "" || p.networks["older"].reason != v1alpha1.ReasonRDConflict {
		t.Errorf("accepted red lost its RD: red %q older %q", p.networks["red"].reason, p.networks["older"].reason)
	}
}

func TestRenderNamespacesAndDeletion(t *testing.T) {
	cfg := &Config{DefaultNetwork: "pods", ExcludedNamespaces: []string{"kube-system"}}
	pods := vn("pods", 10, 1, "65000:1", "10.244.0.0/16")
	red := vn("red", 9, 2, "65000:2", "10.1.0.0/16")
	now := metav1.Now()
	red.DeletionTimestamp = &now
	s := snapshot{
		networks:   []*v1alpha1.VirtualNetwork{pods, red},
		namespaces: []namespaceInfo{{name: "a"}, {name: "kube-system"}, {name: "shop", labelled: true, label: "red"}},
		pods:       map[string]int{"shop": 1},
		nodes:      nodes(1),
	}
	p := render(cfg, s)
	if d := cmp.Diff([]string{"a"}, p.networks["pods"].namespaces); d != "" {
		t.Errorf("pods namespaces: %s", d)
	}
	if !p.networks["red"].active || p.nodes["n0"].vrfs["red"].network != "red" {
		t.Error("a deleted network still used by a pod left the node")
	}
	s.pods["shop"] = 0
	if p = render(cfg, s); p.networks["red"].active || len(p.nodes["n0"].vrfs) != 1 {
		t.Errorf("a deleted, unused network stays: %v", p.nodes["n0"].vrfs)
	}
	iso := &Config{NamespaceIsolation: true, IsolationPrefix: "k8s-"}
	if got := networkOf(iso, namespaceInfo{name: "a"}); got != "k8s-a" {
		t.Errorf("isolation network %q", got)
	}
}

func TestSetRequestOnlyChanges(t *testing.T) {
	rr := netip.MustParseAddr("10.0.0.1")
	a := vrfIntent{network: "a", rd: "1.1.1.1:1", imports: []string{"1:1"}, exports: []string{"1:1"}, encap: v1alpha1.MPLSOverUDP, pools: []string{"10.0.0.0/26"}}
	b := a
	b.network, b.rd = "b", "1.1.1.1:2"
	have := nodeConfig{vrfs: map[string]vrfIntent{"a": a, "old": a}, neighbors: map[netip.Addr]uint32{rr: 65000}, bgpProtocol: "bgp"}
	want := nodeIntent{vrfs: map[string]vrfIntent{"a": a, "b": b}, neighbors: []netip.Addr{rr}, peerAS: 65000}
	req, next, err := setRequest(have, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Delete) != 1 || len(req.Replace) != 1 || req.Replace[0].Path.Elem[1].Key["name"] != "b" {
		t.Fatalf("set request %v", req)
	}
	if req, _, _ := setRequest(next, want); req != nil {
		t.Errorf("nothing changed but %v", req)
	}
	if req, _, _ := setRequest(nodeConfig{vrfs: want.vrfs}, want); req != nil {
		t.Errorf("neighbors sent to a node without BGP: %v", req)
	}
	// A node far behind gets its VRFs in bounded transactions, each VRF
	// whole in one of them.
	many := nodeIntent{vrfs: map[string]vrfIntent{}}
	for i := range 150 {
		v := a
		v.network = fmt.Sprint(i)
		many.vrfs[fmt.Sprintf("v%03d", i)] = v
	}
	have = nodeConfig{vrfs: map[string]vrfIntent{}}
	sets := 0
	for {
		req, next, err := setRequest(have, many)
		if err != nil {
			t.Fatal(err)
		}
		if req == nil {
			break
		}
		if n := len(req.Replace); n > maxOpsPerSet {
			t.Fatalf("set of %d VRFs", n)
		}
		have, sets = next, sets+1
	}
	if sets != 3 || len(have.vrfs) != 150 {
		t.Errorf("%d sets, %d vrfs; want 3 sets of 150", sets, len(have.vrfs))
	}
}

func TestNodeAddressAnnotation(t *testing.T) {
	l := &leader{cfg: &Config{GNMI: GNMIConfig{Port: 9339}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	n := testNode("n0", "192.168.0.7", "")
	if got := l.nodeInfo(n).gnmi; got != "192.168.0.7:9339" {
		t.Errorf("gnmi address %q", got)
	}
	n = testNode("n0", "192.168.0.7", "127.0.0.1:40001")
	if got := l.nodeInfo(n).gnmi; got != "127.0.0.1:40001" {
		t.Errorf("annotated gnmi address %q", got)
	}
}

// BenchmarkRender1000Networks20Nodes: one render pass with 1,000 networks
// (already holding their blocks), 1,000 namespaces and 20 nodes.
func BenchmarkRender1000Networks20Nodes(b *testing.B) {
	cfg := &Config{NamespaceIsolation: true, IsolationPrefix: "k8s-", RouteReflectors: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, BGPAS: 65000}
	s := snapshot{nodes: nodes(20), pods: map[string]int{}}
	for i := range 1000 {
		n := vn(fmt.Sprintf("k8s-ns%d", i), 0, int32(i+1), fmt.Sprintf("65000:%d", i+1), "10.0.0.0/16")
		p := render(cfg, snapshot{networks: []*v1alpha1.VirtualNetwork{n}, nodes: s.nodes})
		for node, block := range p.networks[n.Name].blocks {
			n.Status.Blocks = append(n.Status.Blocks, v1alpha1.NodeBlock{Node: node, Prefix: block})
		}
		s.networks = append(s.networks, n)
		s.namespaces = append(s.namespaces, namespaceInfo{name: fmt.Sprintf("ns%d", i)})
	}
	b.ReportAllocs()
	for b.Loop() {
		p := render(cfg, s)
		if len(p.nodes["n0"].vrfs) != 1000 {
			b.Fatalf("%d vrfs", len(p.nodes["n0"].vrfs))
		}
	}
}
