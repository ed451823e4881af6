package kube

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// aclSim evaluates rendered node policies the way isthmus-acl describes
// its semantics, independently of how they were made: tag selectors
// resolve to the addresses of pod interfaces (of every node) whose tags
// satisfy every term; the entries of the sets attached at a point are one
// list by sequence id, the first match decides; an isolated point drops
// what nothing matches.
type aclSim struct {
	t     *testing.T
	nodes map[string]*nodePolicy
	addr  map[string]netip.Addr // pod key → address
}

type simEnd struct {
	key  string
	addr netip.Addr
	tags map[string]string
	att  podAttachment
	np   *nodePolicy
}

func (s *aclSim) end(key string) simEnd {
	for _, np := range s.nodes {
		if att, ok := np.pods[key]; ok {
			return simEnd{key: key, addr: s.addr[key], tags: att.tags, att: att, np: np}
		}
	}
	s.t.Fatalf("pod %s on no node", key)
	return simEnd{}
}

// allows reports whether a first packet from src to dst passes egress of
// src and ingress of dst.
func (s *aclSim) allows(src, dst simEnd, proto uint8, port uint16) bool {
	if src.att.egress != "" && !s.evaluate(src.np, src.att.egress, dst, true, proto, port) {
		return false
	}
	if dst.att.ingress != "" && !s.evaluate(dst.np, dst.att.ingress, src, false, proto, port) {
		return false
	}
	return true
}

func (s *aclSim) evaluate(np *nodePolicy, set string, peer simEnd, egress bool, proto uint8, port uint16) bool {
	as := np.sets[set]
	if as == nil {
		s.t.Fatalf("attached set %s missing", set)
	}
	seqs := make([]uint32, 0, len(as.GetAclEntries().AclEntry))
	for seq := range as.GetAclEntries().AclEntry {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		cf := as.GetAclEntries().AclEntry[seq].GetConfig()
		if cf.Protocol != nil && *cf.Protocol != proto {
			continue
		}
		if cf.DestinationPort != nil {
			hi := *cf.DestinationPort
			if cf.DestinationPortEnd != nil {
				hi = *cf.DestinationPortEnd
			}
			if port < *cf.DestinationPort || port > hi {
				continue
			}
		}
		group, tags := cf.SourceAddressGroup, cf.SourceTagSelector
		if egress {
			group, tags = cf.DestinationAddressGroup, cf.DestinationTagSelector
		}
		if group != nil && !s.inGroup(np, *group, peer.addr) {
			continue
		}
		if len(tags) > 0 && !s.tagsMatch(np, tags, peer) {
			continue
		}
		return cf.Action == gen.IsthmusAcl_AclAction_ACCEPT
	}
	return false
}

func (s *aclSim) inGroup(np *nodePolicy, name string, a netip.Addr) bool {
	g := np.groups[name]
	if g == nil {
		s.t.Fatalf("address group %s missing", name)
	}
	in := false
	for _, p := range g.GetConfig().Prefix {
		if netip.MustParsePrefix(p).Contains(a) {
			in = true
		}
	}
	for _, p := range g.GetConfig().Except {
		if netip.MustParsePrefix(p).Contains(a) {
			in = false
		}
	}
	return in
}

// tagsMatch resolves a tag selector on the node as the agent does: the
// addresses of the node's own pod interfaces and of its tagged address
// groups whose tags satisfy every term; each key a term uses must be
// declared.
func (s *aclSim) tagsMatch(np *nodePolicy, terms []string, peer simEnd) bool {
	for key, att := range np.pods {
		if s.addr[key] == peer.addr && s.satisfies(np, terms, att.tags) {
			return true
		}
	}
	for name, g := range np.groups {
		if g.GetTags() == nil || !s.inGroup(np, name, peer.addr) {
			continue
		}
		tags := map[string]string{}
		for k, tg := range g.GetTags().Tag {
			tags[k] = tg.GetConfig().GetValue()
		}
		if s.satisfies(np, terms, tags) {
			return true
		}
	}
	return false
}

func (s *aclSim) satisfies(np *nodePolicy, terms []string, tags map[string]string) bool {
	for _, t := range terms {
		neg := strings.HasPrefix(t, "!")
		t = strings.TrimPrefix(t, "!")
		key, val, hasVal := strings.Cut(t, "=")
		notEq := strings.HasSuffix(key, "!")
		key = strings.TrimSuffix(key, "!")
		if !slices.Contains(np.tagKeys, key) {
			s.t.Fatalf("tag selector term %q on undeclared key %q", t, key)
		}
		v, has := tags[key]
		switch {
		case hasVal && notEq:
			if has && v == val {
				return false
			}
		case hasVal:
			if !has || v != val {
				return false
			}
		case neg:
			if has {
				return false
			}
		default:
			if !has {
				return false
			}
		}
	}
	return true
}

func protoOf(p corev1.Protocol) uint8 {
	n, err := protocolNumber(&p)
	if err != nil {
		panic(err)
	}
	return n
}

// simulateCase compiles and renders a case on two nodes (pods a and b of
// every namespace on n1, c on n2) and returns the simulated truth table.
func simulateCase(t *testing.T, f *netpoltest.Fixture, pols []*networkingv1.NetworkPolicy) map[string]bool {
	c := &policyCluster{policies: pols, namespaces: map[string]map[string]string{}}
	for _, ns := range f.Namespaces {
		c.namespaces[ns.Name] = ns.Labels
	}
	sim := &aclSim{t: t, nodes: map[string]*nodePolicy{}, addr: map[string]netip.Addr{}}
	for _, p := range f.Pods {
		pp := policyPodOf(p)
		pp.node = "n1"
		if p.Name == "c" {
			pp.node = "n2"
		}
		c.pods = append(c.pods, pp)
		sim.addr[podKey(p.Namespace, p.Name)] = pp.addr
	}
	compiled, errs := compilePolicies(c)
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	for _, n := range []string{"n1", "n2"} {
		sim.nodes[n] = renderNodePolicy(c, compiled, n, func(string) (string, bool) { return "pods", true }, nil)
	}
	got := map[string]bool{}
	for _, src := range f.Pods {
		for _, dst := range f.Pods {
			if src == dst {
				continue
			}
			se, de := sim.end(podKey(src.Namespace, src.Name)), sim.end(podKey(dst.Namespace, dst.Name))
			for _, pr := range netpoltest.Probes {
				got[netpoltest.Key(src, dst, pr)] = sim.allows(se, de, protoOf(pr.Proto), uint16(pr.Port))
			}
		}
	}
	return got
}

func testFixture() *netpoltest.Fixture {
	i := 0
	return netpoltest.NewFixture(netip.MustParsePrefix("10.9.0.0/24"), func(string, string) netip.Addr {
		i++
		return netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})
	})
}

// TestPolicyTranslationTruthTable: for every truth-table case, the ACLs
// the controller renders, evaluated by the ACL model's semantics, allow
// exactly what the reference evaluator of NetworkPolicy does.
func TestPolicyTranslationTruthTable(t *testing.T) {
	f := testFixture()
	for _, tc := range netpoltest.Cases() {
		t.Run(tc.Name, func(t *testing.T) {
			pols := tc.Policies(f)
			want := f.Expected(pols)
			got := simulateCase(t, f, pols)
			if diff := truthDiff(want, got); diff != "" {
				t.Errorf("reachability differs from the reference:\n%s", diff)
			}
		})
	}
}

// truthDiff lists the probes whose outcome differs.
func truthDiff(want, got map[string]bool) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			lines = append(lines, fmt.Sprintf("  %s: got %v, want %v", k, g, w))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// NetpolExpectedSets renders the ACL sets the controller should hold on
// a node that runs every pod of the fixture: set name → its JSON.
func NetpolExpectedSets(f *netpoltest.Fixture, pols []*networkingv1.NetworkPolicy) map[string]string {
	c := &policyCluster{policies: pols, namespaces: map[string]map[string]string{}}
	for _, ns := range f.Namespaces {
		c.namespaces[ns.Name] = ns.Labels
	}
	for _, p := range f.Pods {
		pp := policyPodOf(p)
		pp.node = "n"
		c.pods = append(c.pods, pp)
	}
	compiled, _ := compilePolicies(c)
	out := map[string]string{}
	for name, s := range renderNodePolicy(c, compiled, "n", func(string) (string, bool) { return "", true }, nil).sets {
		out[name] = ACLSetJSON(s)
	}
	return out
}

// ACLSetJSON is a set's JSON, for comparisons.
func ACLSetJSON(s *gen.IsthmusAcl_Acl_AclSets_AclSet) string {
	js, err := ygot.Marshal7951(s)
	if err != nil {
		return err.Error()
	}
	return string(js)
}

// TestPolicyTranslationRandom: random policies built from every kind of
// selector, peer and port, simulated as rendered, allow exactly what the
// reference evaluator says (pods spread over two nodes).
func TestPolicyTranslationRandom(t *testing.T) {
	f := testFixture()
	rng := rand.New(rand.NewPCG(12, 34))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	labelSel := func(keys ...string) *metav1.LabelSelector {
		ls := &metav1.LabelSelector{}
		for range rng.IntN(3) {
			key := pick(keys...)
			switch rng.IntN(5) {
			case 0:
				ls.MatchLabels = map[string]string{key: pick("a", "b", "c", "x", "y", "z", "web", "db")}
			case 1:
				ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpIn, Values: []string{pick("a", "x", "web"), pick("b", "y", "db")}})
			case 2:
				ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpNotIn, Values: []string{pick("a", "x", "web", "c")}})
			case 3:
				ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpExists})
			default:
				ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpDoesNotExist})
			}
		}
		return ls
	}
	peers := func() []peer {
		var out []peer
		for range rng.IntN(3) {
			switch rng.IntN(4) {
			case 0:
				out = append(out, peer{PodSelector: labelSel("pod", "tier")})
			case 1:
				out = append(out, peer{NamespaceSelector: labelSel("ns", "kubernetes.io/metadata.name")})
			case 2:
				out = append(out, peer{NamespaceSelector: labelSel("ns"), PodSelector: labelSel("pod", "tier")})
			default:
				b := &networkingv1.IPBlock{CIDR: pick("10.9.0.0/24", "10.9.0.0/29", "10.9.0.8/29", "0.0.0.0/0")}
				ex := f.HostPrefix(pick("x", "y", "z"), pick("a", "b", "c"))
				if rng.IntN(2) == 0 && netip.MustParsePrefix(b.CIDR).Contains(netip.MustParsePrefix(ex).Addr()) {
					b.Except = []string{ex}
				}
				out = append(out, peer{IPBlock: b})
			}
		}
		return out
	}
	ports := func() npPorts {
		var out npPorts
		for range rng.IntN(3) {
			proto := []corev1.Protocol{tcp, udp, sctp}[rng.IntN(3)]
			switch rng.IntN(4) {
			case 0:
				out = append(out, port(proto, 80+rng.IntN(2)))
			case 1:
				out = append(out, portRange(proto, 79+int32(rng.IntN(2)), 81))
			case 2:
				out = append(out, portName(&proto, pick("http", "serve-80-tcp", "serve-81-udp", "missing")))
			default:
				out = append(out, anyPort(proto))
			}
		}
		return out
	}
	for i := range 300 {
		var pols []*networkingv1.NetworkPolicy
		for j := range 1 + rng.IntN(3) {
			p := np(pick("x", "y", "z"), fmt.Sprintf("p%d", j), *labelSel("pod", "tier"), nil, nil, nil)
			switch rng.IntN(3) {
			case 0:
				p.Spec.PolicyTypes = ingressOnly
			case 1:
				p.Spec.PolicyTypes = egressOnly
			default:
				p.Spec.PolicyTypes = bothTypes
			}
			for range rng.IntN(3) {
				p.Spec.Ingress = append(p.Spec.Ingress, inRule{From: peers(), Ports: ports()})
				p.Spec.Egress = append(p.Spec.Egress, egRule{To: peers(), Ports: ports()})
			}
			pols = append(pols, p)
		}
		if diff := truthDiff(f.Expected(pols), simulateCase(t, f, pols)); diff != "" {
			t.Fatalf("random case %d differs from the reference:\n%s\npolicies: %+v", i, diff, pols)
		}
	}
}

// TestRemotePodsOfNetworkOffNode: pods of a network the node does not
// hold give it no address group (a group scoped to a VRF the node lacks
// is refused, and would hold up every other policy change of the node),
// while pods of its networks still do.
func TestRemotePodsOfNetworkOffNode(t *testing.T) {
	f := testFixture()
	c := &policyCluster{namespaces: map[string]map[string]string{}}
	for _, ns := range f.Namespaces {
		c.namespaces[ns.Name] = ns.Labels
	}
	for _, p := range f.Pods {
		pp := policyPodOf(p)
		pp.node = "n1"
		if p.Name == "c" {
			pp.node = "n2"
		}
		c.pods = append(c.pods, pp)
	}
	groupsByNS := func(np *nodePolicy) map[string]int {
		out := map[string]int{}
		for name := range np.groups {
			rest, ok := strings.CutPrefix(name, groupPrefix+"pod/")
			if !ok {
				continue
			}
			ns, _, _ := strings.Cut(rest, "/")
			out[ns]++
		}
		return out
	}
	for _, tc := range netpoltest.Cases() {
		c.policies = tc.Policies(f)
		compiled, errs := compilePolicies(c)
		if len(errs) > 0 {
			continue
		}
		all := groupsByNS(renderNodePolicy(c, compiled, "n1", func(string) (string, bool) { return "pods", true }, nil))
		if len(all) < 2 {
			continue
		}
		off := f.Namespaces[0].Name
		if all[off] == 0 {
			for ns := range all {
				off = ns
				break
			}
		}
		got := groupsByNS(renderNodePolicy(c, compiled, "n1", func(ns string) (string, bool) {
			if ns == off {
				return "", false
			}
			return "pods", true
		}, nil))
		if got[off] != 0 {
			t.Fatalf("case %s: %d groups for pods of namespace %s, whose network is not on the node", tc.Name, got[off], off)
		}
		for ns, n := range all {
			if ns != off && got[ns] != n {
				t.Fatalf("case %s: namespace %s has %d groups, want %d", tc.Name, ns, got[ns], n)
			}
		}
		return
	}
	t.Fatal("no case gives a node groups of pods in two namespaces")
}
