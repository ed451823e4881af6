package kube_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
	"github.com/isthmus-net/isthmus/kube/kubetest"
)

type svcT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service

// nodeServices reads the services of a VRF on a node.
func nodeServices(nd *kubetest.Node, vrf string) (map[string]*svcT, error) {
	v, err := vrfOn(nd, vrf)
	if err != nil || v == nil || v.Services == nil {
		return nil, err
	}
	return v.Services.Service, nil
}

// serviceSummary is what the test checks of a service on a node: scope,
// its ports (name protocol port->target) and its backends
// (address:port ready/serving/terminating).
func serviceSummary(s *svcT) string {
	if s == nil {
		return "<none>"
	}
	cf := s.GetConfig()
	parts := []string{fmt.Sprintf("%s %s %s", cf.GetAddress(), cf.GetExternalTrafficScope(), cf.GetSessionAffinity())}
	if s.Ports != nil {
		for _, name := range slices.Sorted(maps.Keys(s.Ports.Port)) {
			pc := s.Ports.Port[name].GetConfig()
			parts = append(parts, fmt.Sprintf("%s %s %d->%d", name, pc.GetProtocol(), pc.GetPort(), pc.GetTargetPort()))
		}
	}
	if s.Backends != nil {
		var bes []string
		for k, b := range s.Backends.Backend {
			bc := b.GetConfig()
			bes = append(bes, fmt.Sprintf("%s:%d %v/%v/%v", k.Address, k.Port, bc.GetReady(), bc.GetServing(), bc.GetTerminating()))
		}
		slices.Sort(bes)
		parts = append(parts, bes...)
	}
	return strings.Join(parts, ", ")
}

// waitServices waits until every node of want holds exactly the services
// want says in vrf (name → summary).
func waitServices(t *testing.T, vrf string, want map[*kubetest.Node]map[string]string) {
	t.Helper()
	eventually(t, 20*time.Second, func() (bool, string) {
		for nd, w := range want {
			svcs, err := nodeServices(nd, vrf)
			if err != nil {
				return false, fmt.Sprintf("read %s: %v", nd.Name, err)
			}
			got := map[string]string{}
			for name, s := range svcs {
				got[name] = serviceSummary(s)
			}
			if !maps.Equal(got, w) {
				return false, fmt.Sprintf("%s holds %v\nwant %v", nd.Name, got, w)
			}
		}
		return true, ""
	})
}

func servicePod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "isthmus.dev/none:0",
			ImagePullPolicy: corev1.PullNever, Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}}}}},
	}
}

// endpointSlice is the EndpointSlice kube-controller-manager would make
// for pods on port 8080 named http (no such controller runs here).
func endpointSlice(name, svc string, pods map[*kubetest.Pod]string) *discoveryv1.EndpointSlice {
	port, proto := int32(8080), corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Protocol: &proto, Port: &port}},
	}
	for _, p := range slices.SortedFunc(maps.Keys(pods), func(a, b *kubetest.Pod) int { return a.Addr.Compare(b.Addr) }) {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{p.Addr.String()},
			NodeName: ptrTo(pods[p]), Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}})
	}
	return es
}

func ptrTo[T any](v T) *T { return &v }

// spread connects n times from client to vip:80 over TCP and counts the
// backends that answered.
func spread(t *testing.T, client *kubetest.Pod, vip netip.Addr, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		answer, err := client.Probe(context.Background(), "tcp", vip, 80, 2*time.Second)
		if err != nil {
			t.Fatalf("%s/%s to %s:80: %v (so far %v)", client.Namespace, client.Name, vip, err, got)
		}
		got[answer]++
	}
	return got
}

// TestServices: on two real isthmusd nodes that learn each other's pods
// through a real route reflector, a ClusterIP Service with EndpointSlices
// (written by the test: no kube-controller-manager runs) becomes a
// service in the VRF of its namespace's network on each node: the cluster
// IP, its port with the named target port resolved from the slice, the
// backends with their conditions. A client pod's connections to
// ClusterIP:80, on either node, are balanced by its node's eBPF forwarder
// across the backends of both nodes (scope ALL); a backend dropped from
// the slice (scale down) leaves every node in one Set and gets no more
// connections; with internalTrafficPolicy Local each node holds its own
// backends only (scope LOCAL); a
// Service without selector takes its hand-written slice; a version of a
// Service the node refuses gets a Warning Event, the node keeps the last
// one it accepted, and the other Services are still configured; a node
// restarted empty gets them again; deleting a Service removes it from
// every node.
func TestServices(t *testing.T) {
	e := newEnv(t, 2)
	n0, n1 := e.nodes[0], e.nodes[1]
	// The nodes exchange their pods' routes through a real route
	// reflector and reach each other through the host.
	cfg := e.withReflector(t)
	ctl, _ := e.runController(cfg)
	e.mustCreateNetwork(network("svc", 302, "65000:302", "10.79.0.0/16"))
	e.mustCreateNetwork(network("other", 303, "65000:303", "10.80.0.0/16"))
	e.createNamespace("shop", map[string]string{v1alpha1.NetworkLabel: "svc"})
	e.createNamespace("misc", map[string]string{v1alpha1.NetworkLabel: "other"})
	e.waitVRF(e.nodes, "svc", true, 30*time.Second)
	others := e.waitVRF(e.nodes, "other", true, 30*time.Second)
	e.waitNamespaceMapping("shop", "svc", 20*time.Second)

	b0, b1 := e.attachPod(n0, servicePod("b0")), e.attachPod(n0, servicePod("b1"))
	b2 := e.attachPod(n1, servicePod("b2"))
	for _, b := range []*kubetest.Pod{b0, b1, b2} {
		b.Serve(t, 8080)
	}
	client := func(name string) *corev1.Pod {
		p := servicePod(name)
		p.Labels = map[string]string{"app": "client"}
		return p
	}
	client0, client1 := e.attachPod(n0, client("client0")), e.attachPod(n1, client("client1"))
	ctx := context.Background()
	eventually(t, 30*time.Second, func() (bool, string) {
		answer, err := client0.Probe(ctx, "tcp", b2.Addr, 8080, 300*time.Millisecond)
		return answer == "shop/b2", fmt.Sprintf("%s to b2 on %s (routes over BGP): %q, %v", client0.Name, n1.Name, answer, err)
	})

	svc, err := e.c.Client.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("web")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr(svc.Spec.ClusterIP)
	slicesAPI := e.c.Client.DiscoveryV1().EndpointSlices("shop")
	es, err := slicesAPI.Create(ctx, endpointSlice("web-1", "web", map[*kubetest.Pod]string{b0: n0.Name, b1: n0.Name, b2: n1.Name}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	be := func(ps ...*kubetest.Pod) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Addr.String()+":8080 true/true/false")
		}
		slices.Sort(out) // as serviceSummary lists them
		return strings.Join(out, ", ")
	}
	head := func(scope string) string { return vip.String() + " " + scope + " NONE, http TCP 80->8080" }

	// Cluster (the default): every node holds every backend, and a
	// client's connections spread over the backends of both nodes.
	all := head("ALL") + ", " + be(b0, b1, b2)
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{n0: {"k8s/shop/web": all}, n1: {"k8s/shop/web": all}})
	for _, c := range []*kubetest.Pod{client0, client1} {
		got := spread(t, c, vip, 45)
		if len(got) != 3 || got["shop/b0"] == 0 || got["shop/b1"] == 0 || got["shop/b2"] == 0 {
			t.Errorf("45 connections from %s to %s:80 answered by %v, want shop/b0, shop/b1 and shop/b2", c.Name, vip, got)
		}
	}

	// Scale down: b1 leaves the slice, every node and every connection.
	rev, err := n0.Revision()
	if err != nil {
		t.Fatal(err)
	}
	es.Endpoints = slices.DeleteFunc(es.Endpoints, func(ep discoveryv1.Endpoint) bool { return ep.Addresses[0] == b1.Addr.String() })
	if es, err = slicesAPI.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	all = head("ALL") + ", " + be(b0, b2)
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{n0: {"k8s/shop/web": all}, n1: {"k8s/shop/web": all}})
	if now, err := n0.Revision(); err != nil || now != rev+1 {
		t.Errorf("%s: revision %d after the scale down, want %d (one Set): %v", n0.Name, now, rev+1, err)
	}
	if got := spread(t, client0, vip, 20); got["shop/b1"] != 0 || got["shop/b0"] == 0 || got["shop/b2"] == 0 {
		t.Errorf("after scale down, connections from %s answered by %v, want shop/b0 and shop/b2 only", client0.Name, got)
	}

	// internalTrafficPolicy Local: each node its own backends, scope LOCAL.
	local := corev1.ServiceInternalTrafficPolicyLocal
	svc.Spec.InternalTrafficPolicy = &local
	if svc, err = e.c.Client.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{
		n0: {"k8s/shop/web": head("LOCAL") + ", " + be(b0)},
		n1: {"k8s/shop/web": head("LOCAL") + ", " + be(b2)},
	})
	if got := spread(t, client0, vip, 5); got["shop/b0"] != 5 {
		t.Errorf("Local: connections from %s answered by %v, want shop/b0 only", client0.Name, got)
	}
	if got := spread(t, client1, vip, 5); got["shop/b2"] != 5 {
		t.Errorf("Local: connections from %s answered by %v, want shop/b2 only", client1.Name, got)
	}
	cluster := corev1.ServiceInternalTrafficPolicyCluster
	svc.Spec.InternalTrafficPolicy = &cluster
	if svc, err = e.c.Client.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{n0: {"k8s/shop/web": all}, n1: {"k8s/shop/web": all}})

	// A Service without selector whose hand-written slice names an
	// address of another network's block on n0: n0 refuses it, the Service gets
	// a Warning Event, and web stays configured.
	bad, err := e.c.Client.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Without endpoints yet it is valid: the nodes take it as it is, and
	// keep that (last accepted) version once they refuse the next.
	badHead := bad.Spec.ClusterIP + " ALL NONE, http TCP 80->80"
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{
		n0: {"k8s/shop/web": all, "k8s/shop/bad": badHead}, n1: {"k8s/shop/web": all, "k8s/shop/bad": badHead}})
	var otherBlock netip.Prefix
	for p := range others[n0.Name].GetAddressPools().AddressPool {
		otherBlock = netip.MustParsePrefix(p)
	}
	// An address of network other on n0 (n1, whose block of other is
	// another, takes it as a pod of another host).
	stray := &kubetest.Pod{Addr: otherBlock.Addr().Next().Next()}
	if _, err := slicesAPI.Create(ctx, endpointSlice("bad-1", "bad", map[*kubetest.Pod]string{stray: n0.Name}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() (bool, string) {
		evs, err := e.c.Client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=bad"})
		if err != nil {
			return false, err.Error()
		}
		for _, ev := range evs.Items {
			if ev.Reason == kube.ReasonServiceRefused && ev.InvolvedObject.UID == bad.UID && strings.Contains(ev.Message, stray.Addr.String()) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("events of shop/bad: %+v", evs.Items)
	})

	// A change to web still reaches the nodes past the refused one.
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	if _, err = e.c.Client.CoreV1().Services("shop").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	all = strings.Replace(all, " NONE,", " CLIENT_IP,", 1)
	badOn1 := bad.Spec.ClusterIP + " ALL NONE, http TCP 80->8080, " + be(stray)
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{
		n0: {"k8s/shop/web": all, "k8s/shop/bad": badHead}, n1: {"k8s/shop/web": all, "k8s/shop/bad": badOn1}})

	// A node that comes back empty gets its VRF from its node worker and
	// then its services again.
	n1.Stop()
	n1.Restart(t, true)
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{n1: {"k8s/shop/web": all, "k8s/shop/bad": badOn1}})

	// Deleting the Services removes them from every node.
	sets := ctl.SetCount()
	for _, name := range []string{"web", "bad"} {
		if err := e.c.Client.CoreV1().Services("shop").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitServices(t, "svc", map[*kubetest.Node]map[string]string{n0: {}, n1: {}})
	if answer, err := client0.Probe(ctx, "tcp", b0.Addr, 8080, 2*time.Second); answer != "shop/b0" {
		t.Errorf("b0 itself answered %q, %v", answer, err)
	}
	if _, err := client0.Probe(ctx, "tcp", vip, 80, 300*time.Millisecond); err != kubetest.ErrNoAnswer {
		t.Errorf("%s:80 after the Service is deleted: %v, want no answer", vip, err)
	}
	t.Logf("deletion took %d Sets", ctl.SetCount()-sets)
}
