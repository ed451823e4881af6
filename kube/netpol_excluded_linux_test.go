package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// TestNetworkPolicyExcludedNamespacePeers: with kube-system excluded (the
// chart's default), CoreDNS-like pods there, attached by the real CNI
// plugin to two real isthmusd nodes, are still peers: a default-deny
// egress plus the usual "allow DNS to kube-dns in kube-system" lets a pod
// of namespace x reach the DNS pod of its node on UDP and TCP 53 and
// nothing else (probed through the eBPF forwarder), and gives the other
// node's DNS pod as a tagged address group. A NetworkPolicy of
// kube-system attaches nothing there and gets a Warning Event saying
// why; a policy with an SCTP port gets one naming the port.
func TestNetworkPolicyExcludedNamespacePeers(t *testing.T) {
	e := newEnv(t, 2)
	n0, n1 := e.nodes[0], e.nodes[1]
	cfg := e.config("a")
	cfg.ExcludedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}
	e.runController(cfg)
	e.mustCreateNetwork(network("pol", 302, "65000:302", "10.79.0.0/16"))
	e.createNamespace("x", map[string]string{"ns": "x", v1alpha1.NetworkLabel: "pol"})
	ctx := context.Background()
	if _, err := e.c.Client.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		e.createNamespace("kube-system", nil)
	}
	e.waitVRF(e.nodes, "pol", true, 30*time.Second)
	e.waitNamespaceMapping("x", "pol", 20*time.Second)

	a := e.attachPodIn(n0, "k8s-pod-network", netpoltest.NewPod("x", "a", netip.Addr{}))
	b := e.attachPodIn(n0, "k8s-pod-network", netpoltest.NewPod("x", "b", netip.Addr{}))
	// kube-system joins no network: the node's CNI configuration (here the
	// network name "pol", which is the VRF's) places its pods.
	dns := func(nd *kubetest.Node, name string) *kubetest.Pod {
		p := netpoltest.NewPod("kube-system", name, netip.Addr{})
		p.Labels = map[string]string{"k8s-app": "kube-dns"}
		return e.attachPodIn(nd, "pol", p)
	}
	dns0, dns1 := dns(n0, "coredns-0"), dns(n1, "coredns-1")
	for _, p := range []*kubetest.Pod{dns0, b} {
		p.Serve(t, 53)
		p.Serve(t, 80)
	}

	udp, tcp, sctp := corev1.ProtocolUDP, corev1.ProtocolTCP, corev1.ProtocolSCTP
	p53, p3868 := intstr.FromInt32(53), intstr.FromInt32(3868)
	pols := []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "default-deny-egress"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "allow-dns"},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &p53}, {Protocol: &tcp, Port: &p53}},
				}},
			}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "diameter"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &sctp, Port: &p3868}}}},
			}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "deny-all"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}},
	}
	created := map[string]*networkingv1.NetworkPolicy{}
	for _, p := range pols {
		c, err := e.c.Client.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create policy %s/%s: %v", p.Namespace, p.Name, err)
		}
		created[p.Namespace+"/"+p.Name] = c
	}

	// Node 0: x/a's egress set selects kube-dns in kube-system; the DNS
	// pod's interface carries its tags and no set. Node 1's DNS pod is a
	// tagged group there, scoped to no VRF (its namespace joins none).
	eventually(t, 20*time.Second, func() (bool, string) {
		pc, err := readPolicyConfig(n0)
		if err != nil {
			return false, err.Error()
		}
		ia, id := pc.pods["x/a"], pc.pods["kube-system/coredns-0"]
		if ia == nil || !slices.Equal(ia.GetAcl().GetConfig().GetEgressAclSet(), []string{"k8s/x/a/egress"}) {
			return false, fmt.Sprintf("x/a attachments %+v", ia.GetAcl().GetConfig())
		}
		if id == nil || tagsOf(id.GetTags())["k8s.pod/k8s-app"] != "kube-dns" || id.GetAcl() != nil {
			return false, fmt.Sprintf("kube-system/coredns-0 interface: tags %v, acl %+v; want its tags, no acl", tagsOf(id.GetTags()), id.GetAcl())
		}
		g := pc.acl.GetAddressGroups().GetAddressGroup("k8s.pod/kube-system/coredns-1")
		if !slices.Equal(g.GetConfig().GetPrefix(), []string{dns1.Addr.String() + "/32"}) || g.GetConfig().NetworkInstance != nil ||
			groupTagsOf(g.GetTags())["k8s.pod/k8s-app"] != "kube-dns" {
			return false, fmt.Sprintf("group of kube-system/coredns-1: %+v tags %v", g.GetConfig(), groupTagsOf(g.GetTags()))
		}
		for _, e := range pc.acl.GetAclSets().GetAclSet("k8s/x/a/egress").GetAclEntries().AclEntry {
			if sel := e.GetConfig().DestinationTagSelector; slices.Contains(sel, "k8s.pod/k8s-app=kube-dns") &&
				slices.Contains(sel, "k8s.ns/kubernetes.io/metadata.name=kube-system") {
				return true, ""
			}
		}
		return false, "x/a's egress set has no entry selecting kube-dns in kube-system"
	})
	// The forwarder lets x/a reach DNS, and nothing else.
	for _, pr := range []struct {
		proto string
		to    *kubetest.Pod
		port  int
		want  bool
	}{{"udp", dns0, 53, true}, {"tcp", dns0, 53, true}, {"tcp", dns0, 80, false}, {"udp", b, 53, false}} {
		eventually(t, 5*time.Second, func() (bool, string) {
			answer, err := a.Probe(ctx, pr.proto, pr.to.Addr, pr.port, 400*time.Millisecond)
			if err != nil && err != kubetest.ErrNoAnswer {
				t.Fatalf("probe %s %s:%d: %v", pr.proto, pr.to.Addr, pr.port, err)
			}
			got := err == nil && answer != ""
			return got == pr.want, fmt.Sprintf("x/a → %s %s/%d: answered %v (%q), want %v", pr.to.Addr, pr.proto, pr.port, got, answer, pr.want)
		})
	}

	// The excluded namespace's own policy and the SCTP port are reported.
	events := func(key string) []corev1.Event {
		ns, name, _ := strings.Cut(key, "/")
		evs, err := e.c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		return evs.Items
	}
	for key, want := range map[string][2]string{
		"kube-system/deny-all": {kube.ReasonPolicyNotApplied, "namespace kube-system is excluded"},
		"x/diameter":           {kube.ReasonPolicyPartlyTranslated, "ingress rule 0 port 0 (SCTP 3868)"},
	} {
		eventually(t, 10*time.Second, func() (bool, string) {
			var seen []string
			for _, ev := range events(key) {
				if ev.Reason == want[0] && ev.InvolvedObject.UID == created[key].UID && strings.Contains(ev.Message, want[1]) &&
					ev.Type == corev1.EventTypeWarning && ev.InvolvedObject.Kind == "NetworkPolicy" {
					return true, ""
				}
				seen = append(seen, ev.Reason+": "+ev.Message)
			}
			return false, fmt.Sprintf("events of %s: %q, want %s naming %q", key, seen, want[0], want[1])
		})
	}
	// One Event per notice, not one per pass (a pod's label change makes
	// passes); the translated policies get none.
	for i := range 3 {
		patch := fmt.Sprintf(`{"metadata":{"labels":{"pass":"%d"}}}`, i)
		if _, err := e.c.Client.CoreV1().Pods("x").Patch(ctx, "b", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n := len(events("kube-system/deny-all")); n != 1 {
		t.Errorf("kube-system/deny-all has %d events, want 1", n)
	}
	if n := len(events("x/allow-dns")); n != 0 {
		t.Errorf("x/allow-dns has %d events, want none", n)
	}
}

// attachPodIn is attachPod with the CNI configuration's network name.
func (e *env) attachPodIn(nd *kubetest.Node, network string, spec *corev1.Pod) *kubetest.Pod {
	e.t.Helper()
	ctx := context.Background()
	spec.Spec.NodeName = nd.Name
	created, err := e.c.Client.CoreV1().Pods(spec.Namespace).Create(ctx, spec, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p := nd.AddPod(e.t, network, spec.Namespace, spec.Name)
	created.Status.PodIP = p.Addr.String()
	created.Status.PodIPs = []corev1.PodIP{{IP: p.Addr.String()}}
	created.Status.Phase = corev1.PodRunning
	if _, err := e.c.Client.CoreV1().Pods(spec.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return p
}
