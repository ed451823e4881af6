package kube

import (
	"fmt"
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// BenchmarkPolicyPass is the policy half of one leader pass at cluster
// scale: 20 namespaces of 50 pods (1,000) on 20 nodes, 5 policies per
// namespace (100: default deny, pod and namespace selectors, ports, named
// ports both ways, an ipBlock), compiled, rendered for every node and
// compared with the previous pass's rendering (as each node's worker is
// handed its intent).
func BenchmarkPolicyPass(b *testing.B) {
	c := &policyCluster{namespaces: map[string]map[string]string{}}
	for n := range 20 {
		ns := fmt.Sprintf("ns%d", n)
		c.namespaces[ns] = map[string]string{"team": fmt.Sprintf("t%d", n%4), "kubernetes.io/metadata.name": ns}
		for i := range 50 {
			p := policyPodOf(netpoltest.NewPod(ns, fmt.Sprintf("p%d", i), netip.AddrFrom4([4]byte{10, byte(n), 0, byte(i + 1)})))
			p.labels["app"] = fmt.Sprintf("app%d", i%5)
			p.node = fmt.Sprintf("node%d", (n*50+i)%20)
			c.pods = append(c.pods, p)
		}
		c.policies = append(c.policies,
			np(ns, "deny", metav1.LabelSelector{}, bothTypes, nil, nil),
			np(ns, "web", sel("app", "app0"), nil, []inRule{{From: []peer{{NamespaceSelector: selp("team", "t1"), PodSelector: selp("app", "app1")}},
				Ports: npPorts{port(tcp, 80), portName(nil, "http")}}}, nil),
			np(ns, "db", sel("app", "app1"), nil, []inRule{{From: []peer{{PodSelector: selp("app", "app0")}}, Ports: npPorts{portRange(tcp, 5432, 5439)}}}, nil),
			np(ns, "out", sel("app", "app0"), egressOnly, nil, []egRule{
				{To: []peer{{NamespaceSelector: expr("team", metav1.LabelSelectorOpIn, "t1", "t2")}}, Ports: npPorts{portName(&tcp, "http")}},
				{To: []peer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}}}),
			np(ns, "dns", metav1.LabelSelector{}, egressOnly, nil, []egRule{{Ports: npPorts{port(udp, 53)}}}),
		)
	}
	vrf := func(string) (string, bool) { return "pods", true }
	prev := make([]*nodePolicy, 20)
	b.ResetTimer()
	for b.Loop() {
		compiled, errs := compilePolicies(c)
		if len(errs) > 0 {
			b.Fatal(errs)
		}
		for n := range 20 {
			np := renderNodePolicy(c, compiled, fmt.Sprintf("node%d", n), vrf, nil)
			if prev[n] != nil && !prev[n].equal(np) {
				b.Fatal("a pass over the same cluster rendered something else")
			}
			prev[n] = np
		}
	}
}
