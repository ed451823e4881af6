package kube

import (
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// dnsAllowEgress is the usual companion of a default-deny egress: pods of
// namespace ns may reach kube-dns in kube-system on UDP and TCP 53.
func dnsAllowEgress(ns string) *networkingv1.NetworkPolicy {
	return np(ns, "allow-dns", metav1.LabelSelector{}, egressOnly, nil, []egRule{{
		To:    []peer{{NamespaceSelector: selp("kubernetes.io/metadata.name", "kube-system"), PodSelector: selp("k8s-app", "kube-dns")}},
		Ports: npPorts{port(udp, 53), port(tcp, 53)},
	}})
}

// TestExcludedNamespacePodsArePeers: pods of an excluded namespace
// (CoreDNS in kube-system) are peers of other namespaces' policies, on
// the pod's node (interface tags) and on others (a tagged group scoped to
// no VRF, their namespace joining no network), so the DNS allow lets an
// egress-isolated pod reach them and nothing else; a policy of the
// excluded namespace isolates none of its pods and is reported.
func TestExcludedNamespacePodsArePeers(t *testing.T) {
	dnsPod := func(name, node, addr string) *policyPod {
		return &policyPod{namespace: "kube-system", name: name, node: node, addr: netip.MustParseAddr(addr),
			labels: map[string]string{"k8s-app": "kube-dns"}}
	}
	app := &policyPod{namespace: "x", name: "a", node: "n1", addr: netip.MustParseAddr("10.9.0.1"), labels: map[string]string{"pod": "a"}}
	other := &policyPod{namespace: "kube-system", name: "metrics", node: "n1", addr: netip.MustParseAddr("10.9.0.4"),
		labels: map[string]string{"k8s-app": "metrics"}}
	local, remote := dnsPod("coredns-1", "n1", "10.9.0.2"), dnsPod("coredns-2", "n2", "10.9.0.3")
	denyAll := np("kube-system", "deny-all", metav1.LabelSelector{}, bothTypes, nil, nil)
	c := &policyCluster{
		policies:   []*networkingv1.NetworkPolicy{dnsAllowEgress("x"), denyAll},
		namespaces: map[string]map[string]string{"x": {"kubernetes.io/metadata.name": "x"}, "kube-system": {"kubernetes.io/metadata.name": "kube-system"}},
		pods:       []*policyPod{app, local, remote, other},
		excluded:   map[string]bool{"kube-system": true},
	}
	compiled, errs := compilePolicies(c)
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	for _, p := range []*policyPod{local, remote, other} {
		if pp := compiled[p]; pp.ingressIsolated || pp.egressIsolated {
			t.Errorf("%s/%s of an excluded namespace is isolated (%+v)", p.namespace, p.name, pp)
		}
	}
	vrf := func(ns string) (string, bool) {
		if ns == "kube-system" {
			return "", true // joins no network: its VRF is the node's CNI choice
		}
		return "pods", true
	}
	sim := &aclSim{t: t, nodes: map[string]*nodePolicy{}, addr: map[string]netip.Addr{}}
	for _, p := range c.pods {
		sim.addr[podKey(p.namespace, p.name)] = p.addr
	}
	for _, n := range []string{"n1", "n2"} {
		sim.nodes[n] = renderNodePolicy(c, compiled, n, vrf, nil)
	}
	n1 := sim.nodes["n1"]
	att := n1.pods["kube-system/coredns-1"]
	if att.tags["k8s.pod/k8s-app"] != "kube-dns" || att.tags[nsNameTag] != "kube-system" || att.ingress != "" || att.egress != "" {
		t.Errorf("local CoreDNS interface: %+v, want its tags and no set attached", att)
	}
	g := n1.groups[groupPrefix+"pod/kube-system/coredns-2"]
	if g == nil {
		t.Fatalf("node n1 has no group for the remote CoreDNS pod; groups %v", slices.Sorted(maps.Keys(n1.groups)))
	}
	if ni := g.GetConfig().NetworkInstance; ni != nil || !slices.Equal(g.GetConfig().Prefix, []string{"10.9.0.3/32"}) {
		t.Errorf("remote CoreDNS group: network-instance %v, prefixes %v; want none and 10.9.0.3/32", ni, g.GetConfig().Prefix)
	}
	src := sim.end("x/a")
	for _, tc := range []struct {
		dst   string
		proto uint8
		port  uint16
		want  bool
	}{
		{"kube-system/coredns-1", protoUDP, 53, true},
		{"kube-system/coredns-1", protoTCP, 53, true},
		{"kube-system/coredns-2", protoUDP, 53, true},
		{"kube-system/coredns-2", protoTCP, 80, false},
		{"kube-system/metrics", protoUDP, 53, false},
	} {
		if got := sim.allows(src, sim.end(tc.dst), tc.proto, tc.port); got != tc.want {
			t.Errorf("x/a → %s proto %d port %d: allowed %v, want %v", tc.dst, tc.proto, tc.port, got, tc.want)
		}
	}
	// The deny-all of kube-system attaches nothing there, and says so.
	if got := sim.allows(sim.end("kube-system/metrics"), sim.end("kube-system/coredns-1"), protoTCP, 80); !got {
		t.Error("kube-system's own deny-all is enforced there; the namespace is excluded")
	}
	n := policyNotices(c, errs)
	if got := n["kube-system/deny-all"]; got.reason != ReasonPolicyNotApplied || !strings.Contains(got.message, "excluded") {
		t.Errorf("notice of kube-system/deny-all: %+v, want %s naming the exclusion", got, ReasonPolicyNotApplied)
	}
	if got, ok := n["x/allow-dns"]; ok {
		t.Errorf("x/allow-dns is noticed (%+v); it is translated in full", got)
	}
}

// TestSCTPPortsReported: an SCTP port allows nothing (the forwarder
// matches ports of TCP and UDP only) and the policy's notice names it;
// SCTP without a port is matched by protocol, and a rule that cannot be
// translated is named too.
func TestSCTPPortsReported(t *testing.T) {
	named := portName(&sctp, "diameter")
	pol := np("x", "sctp", sel("pod", "a"), nil, []inRule{{
		Ports: npPorts{port(sctp, 3868), portRange(sctp, 2905, 2910), named, anyPort(sctp), port(tcp, 80)},
	}}, nil)
	bad := np("x", "reversed", sel("pod", "b"), nil, []inRule{{Ports: npPorts{portRange(tcp, 90, 80)}}}, nil)
	egressOnlySCTP := np("x", "egress-typed", sel("pod", "c"), egressOnly, []inRule{{Ports: npPorts{port(sctp, 9)}}}, nil)
	a := &policyPod{namespace: "x", name: "a", node: "n1", addr: netip.MustParseAddr("10.9.0.1"), labels: map[string]string{"pod": "a"},
		ports: []namedPort{{name: "diameter", proto: protoSCTP, number: 3868}}}
	c := &policyCluster{policies: []*networkingv1.NetworkPolicy{pol, bad, egressOnlySCTP},
		namespaces: map[string]map[string]string{"x": {}}, pods: []*policyPod{a}}
	compiled, errs := compilePolicies(c)
	out := renderNodePolicy(c, compiled, "n1", func(string) (string, bool) { return "pods", true }, nil)
	set := out.sets["k8s/x/a/ingress"]
	if set == nil {
		t.Fatal("x/a has no ingress set")
	}
	var kinds []string
	for _, e := range set.GetAclEntries().AclEntry {
		cf := e.GetConfig()
		if cf.GetProtocol() == protoSCTP && cf.DestinationPort != nil {
			t.Errorf("entry %d matches SCTP port %d, which the forwarder cannot", cf.GetSequenceId(), cf.GetDestinationPort())
		}
		kinds = append(kinds, strings.TrimSpace(strings.Join([]string{protoName(cf.GetProtocol()), portString(cf.DestinationPort)}, " ")))
	}
	slices.Sort(kinds)
	if want := []string{"sctp", "tcp 80"}; !slices.Equal(kinds, want) {
		t.Errorf("entries %v, want %v", kinds, want)
	}
	n := policyNotices(c, errs)
	got := n["x/sctp"]
	if got.reason != ReasonPolicyPartlyTranslated {
		t.Errorf("notice of x/sctp: %+v, want %s", got, ReasonPolicyPartlyTranslated)
	}
	for _, w := range []string{"ingress rule 0 port 0 (SCTP 3868)", "ingress rule 0 port 1 (SCTP 2905-2910)", "ingress rule 0 port 2 (SCTP diameter)"} {
		if !strings.Contains(got.message, w) {
			t.Errorf("notice of x/sctp %q does not name %q", got.message, w)
		}
	}
	if strings.Contains(got.message, "port 3 ") || strings.Contains(got.message, "port 4 ") {
		t.Errorf("notice of x/sctp %q names a port that is translated", got.message)
	}
	if got := n["x/reversed"]; got.reason != ReasonPolicyNotTranslated || !strings.Contains(got.message, "range 90-80") {
		t.Errorf("notice of x/reversed: %+v, want %s naming the range", got, ReasonPolicyNotTranslated)
	}
	if got, ok := n["x/egress-typed"]; ok {
		t.Errorf("x/egress-typed is noticed (%+v); its ingress rules do not apply", got)
	}
}

func protoName(p uint8) string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoSCTP:
		return "sctp"
	}
	return ""
}

func portString(p *uint16) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(int(*p))
}
