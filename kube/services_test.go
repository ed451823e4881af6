package kube

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/isthmus-net/isthmus/gen"
)

// describeService renders an Isthmus service as one line per fact, for
// comparing translations.
func describeService(s *svcT) []string {
	cf := s.GetConfig()
	out := []string{fmt.Sprintf("%s %s scope=%s affinity=%s", s.GetName(), cf.GetAddress(),
		cf.GetExternalTrafficScope(), cf.GetSessionAffinity())}
	if s.GetPorts() != nil {
		for _, name := range slices.Sorted(maps.Keys(s.GetPorts().Port)) {
			pc := s.GetPorts().Port[name].GetConfig()
			target := "own"
			if pc.TargetPort != nil {
				target = fmt.Sprint(pc.GetTargetPort())
			}
			out = append(out, fmt.Sprintf("  port %s %s %d -> %s", name, pc.GetProtocol(), pc.GetPort(), target))
		}
	}
	if s.GetBackends() != nil {
		var bes []string
		for k, b := range s.GetBackends().Backend {
			bc := b.GetConfig()
			bes = append(bes, fmt.Sprintf("  backend %s:%d ready=%v serving=%v terminating=%v weight=%d",
				k.Address, k.Port, bc.GetReady(), bc.GetServing(), bc.GetTerminating(), bc.GetWeight()))
		}
		slices.Sort(bes)
		out = append(out, bes...)
	}
	return out
}

func testService(name string, mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: "10.96.0.10",
			Selector:  map[string]string{"app": name},
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("web")},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(5353)},
			},
		},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

type testEndpoint struct {
	addr, node                  string
	ready, serving, terminating *bool
}

func testSlice(name, svc string, ports map[string]int32, eps ...testEndpoint) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, pn := range slices.Sorted(maps.Keys(ports)) {
		name, proto, _ := strings.Cut(pn, "/")
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: valPtr(name), Protocol: valPtr(corev1.Protocol(proto)), Port: valPtr(ports[pn])})
	}
	for _, ep := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ep.addr}, NodeName: valPtr(ep.node),
			Conditions: discoveryv1.EndpointConditions{Ready: ep.ready, Serving: ep.serving, Terminating: ep.terminating}})
	}
	return es
}

// TestTranslateService: ClusterIP Services with their EndpointSlices
// become the services the model holds, port by port and backend by
// backend, conditions mapped as discovery.k8s.io/v1 defines them.
func TestTranslateService(t *testing.T) {
	t8080 := map[string]int32{"http/TCP": 8080, "dns/UDP": 5353}
	yes, no := valPtr(true), valPtr(false)
	for _, tc := range []struct {
		name    string
		svc     *corev1.Service
		slices  []*discoveryv1.EndpointSlice
		node    string
		want    []string
		wantErr string
	}{{
		name: "two ports, conditions",
		svc:  testService("web", nil),
		slices: []*discoveryv1.EndpointSlice{
			testSlice("web-a", "web", t8080,
				testEndpoint{addr: "10.1.0.2", node: "n0"},                                            // unset: ready, serving
				testEndpoint{addr: "10.1.1.2", node: "n1", ready: yes, serving: yes},                  // ready
				testEndpoint{addr: "10.1.1.3", node: "n1", ready: no, serving: no},                    // not ready
				testEndpoint{addr: "10.1.0.3", node: "n0", ready: no, serving: yes, terminating: yes}, // draining
			),
			testSlice("web-b", "web", t8080,
				testEndpoint{addr: "10.1.0.2", node: "n0", ready: no}, // duplicate: web-a's wins
				testEndpoint{addr: "fd00::1", node: "n0"},             // not ipv4
			),
		},
		want: []string{
			"k8s/shop/web 10.96.0.10 scope=ALL affinity=NONE",
			"  port dns UDP 53 -> 5353",
			"  port http TCP 80 -> 8080",
			"  backend 10.1.0.2:8080 ready=true serving=true terminating=false weight=1",
			"  backend 10.1.0.3:8080 ready=false serving=true terminating=true weight=1",
			"  backend 10.1.1.2:8080 ready=true serving=true terminating=false weight=1",
			"  backend 10.1.1.3:8080 ready=false serving=false terminating=false weight=1",
		},
	}, {
		name: "hand-written slice: ready and terminating",
		svc:  testService("web", nil),
		slices: []*discoveryv1.EndpointSlice{testSlice("x", "web", t8080,
			testEndpoint{addr: "10.1.0.2", node: "n0", ready: yes, terminating: yes})},
		want: []string{
			"k8s/shop/web 10.96.0.10 scope=ALL affinity=NONE",
			"  port dns UDP 53 -> 5353",
			"  port http TCP 80 -> 8080",
			"  backend 10.1.0.2:8080 ready=false serving=true terminating=true weight=1",
		},
	}, {
		name: "named target differs between pods: a service of its own",
		svc:  testService("web", nil),
		slices: []*discoveryv1.EndpointSlice{
			testSlice("a", "web", t8080, testEndpoint{addr: "10.1.0.2", node: "n0"}),
			testSlice("b", "web", map[string]int32{"http/TCP": 9090, "dns/UDP": 5353}, testEndpoint{addr: "10.1.1.2", node: "n1"}),
		},
		want: []string{
			"k8s/shop/web 10.96.0.10 scope=ALL affinity=NONE",
			"  port dns UDP 53 -> 5353",
			"  backend 10.1.0.2:5353 ready=true serving=true terminating=false weight=1",
			"  backend 10.1.1.2:5353 ready=true serving=true terminating=false weight=1",
			"k8s/shop/web/http 10.96.0.10 scope=ALL affinity=NONE",
			"  port http TCP 80 -> own",
			"  backend 10.1.0.2:8080 ready=true serving=true terminating=false weight=1",
			"  backend 10.1.1.2:9090 ready=true serving=true terminating=false weight=1",
		},
	}, {
		name: "no endpoints: numbered target kept, named one unknown",
		svc:  testService("web", nil),
		want: []string{
			"k8s/shop/web 10.96.0.10 scope=ALL affinity=NONE",
			"  port dns UDP 53 -> 5353",
			"  port http TCP 80 -> own",
		},
	}, {
		name: "internalTrafficPolicy Local: this node's endpoints, scope LOCAL; ClientIP affinity",
		svc: testService("web", func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = valPtr(corev1.ServiceInternalTrafficPolicyLocal)
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.Ports = s.Spec.Ports[:1]
		}),
		slices: []*discoveryv1.EndpointSlice{testSlice("a", "web", t8080,
			testEndpoint{addr: "10.1.0.2", node: "n0"}, testEndpoint{addr: "10.1.1.2", node: "n1"})},
		node: "n1",
		want: []string{
			"k8s/shop/web 10.96.0.10 scope=LOCAL affinity=CLIENT_IP",
			"  port http TCP 80 -> 8080",
			"  backend 10.1.1.2:8080 ready=true serving=true terminating=false weight=1",
		},
	}, {
		name: "LoadBalancer, externalTrafficPolicy Local, unnamed port, SCTP left out",
		svc: testService("lb", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.Ports = []corev1.ServicePort{
				{Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(8443), NodePort: 30443},
				{Name: "s", Protocol: corev1.ProtocolSCTP, Port: 9},
			}
		}),
		slices: []*discoveryv1.EndpointSlice{testSlice("a", "lb", map[string]int32{"/TCP": 8443, "s/SCTP": 9},
			testEndpoint{addr: "10.1.0.2", node: "n0"})},
		want: []string{
			"k8s/shop/lb 10.96.0.10 scope=LOCAL affinity=NONE",
			"  port tcp-443 TCP 443 -> 8443",
			"  backend 10.1.0.2:8443 ready=true serving=true terminating=false weight=1",
		},
	}, {
		name: "headless: nothing",
		svc:  testService("h", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }),
	}, {
		name: "ExternalName: nothing",
		svc: testService("x", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ClusterIP, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "", "example.com"
		}),
	}, {
		name: "dual stack, IPv6 first: the IPv4 cluster IP",
		svc: testService("ds", func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "fd00::10", []string{"fd00::10", "10.96.0.20"}
			s.Spec.Ports = s.Spec.Ports[1:]
		}),
		want: []string{
			"k8s/shop/ds 10.96.0.20 scope=ALL affinity=NONE",
			"  port dns UDP 53 -> 5353",
		},
	}, {
		name:    "IPv6 cluster IP",
		svc:     testService("v6", func(s *corev1.Service) { s.Spec.ClusterIP = "fd00::10" }),
		wantErr: `cluster ip "fd00::10" is not an ipv4 address`,
	}, {
		name: "SCTP only",
		svc: testService("sctp", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "s", Protocol: corev1.ProtocolSCTP, Port: 9}}
		}),
		wantErr: "no tcp or udp port",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			trees, err := translateService(tc.svc, tc.slices, tc.node)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range trees {
				if err := s.ΛValidate(); err != nil {
					t.Errorf("%s does not validate: %v", s.GetName(), err)
				}
				got = append(got, describeService(s)...)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("translation (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRenderNodeServices: a node gets the Services of the namespaces it
// maps to a VRF, in that VRF; the others and untranslatable ones not.
func TestRenderNodeServices(t *testing.T) {
	svcs := []*corev1.Service{
		testService("web", nil),
		testService("v6", func(s *corev1.Service) { s.Spec.ClusterIP = "fd00::1" }),
		testService("other", func(s *corev1.Service) { s.Namespace = "elsewhere"; s.Spec.ClusterIP = "10.96.0.11" }),
	}
	eps := []*discoveryv1.EndpointSlice{testSlice("web-a", "web", map[string]int32{"http/TCP": 8080, "dns/UDP": 5353},
		testEndpoint{addr: "10.1.0.2", node: "n0"})}
	slicesOf := func(ns, name string) []*discoveryv1.EndpointSlice {
		if ns == "shop" && name == "web" {
			return eps
		}
		return nil
	}
	got, errs := renderNodeServices(svcs, newServiceTranslator(slicesOf), func(ns string) string {
		if ns == "shop" {
			return "red"
		}
		return ""
	}, "n0")
	if len(got) != 1 || len(got["red"]) != 1 || got["red"]["k8s/shop/web"] == nil {
		t.Fatalf("services %v, want red: k8s/shop/web", got)
	}
	if len(errs) != 1 || errs["shop/v6"] == nil {
		t.Errorf("errors %v, want shop/v6", errs)
	}

	// One translation serves every node, except with
	// internalTrafficPolicy Local, where each node has its own endpoints.
	st := newServiceTranslator(slicesOf)
	vrfOf := func(string) string { return "red" }
	a, _ := renderNodeServices(svcs[:1], st, vrfOf, "n0")
	b, _ := renderNodeServices(svcs[:1], st, vrfOf, "n1")
	if a["red"]["k8s/shop/web"] != b["red"]["k8s/shop/web"] {
		t.Errorf("Cluster: translated once per node")
	}
	svcs[0].Spec.InternalTrafficPolicy = valPtr(corev1.ServiceInternalTrafficPolicyLocal)
	a, _ = renderNodeServices(svcs[:1], st, vrfOf, "n0")
	b, _ = renderNodeServices(svcs[:1], st, vrfOf, "n1")
	if na, nb := len(a["red"]["k8s/shop/web"].GetBackends().Backend), b["red"]["k8s/shop/web"].GetBackends(); na != 1 || nb != nil {
		t.Errorf("Local: n0 has %d backends (want 1), n1 %v (want none)", na, nb)
	}
}

// TestServiceSetRequest: one transaction replaces what differs and
// deletes what the controller no longer wants, leaves the operator's
// services, a refused service and VRFs not on the node alone, and is nil
// once the node holds the intent.
func TestServiceSetRequest(t *testing.T) {
	web := testService("web", nil)
	eps := []*discoveryv1.EndpointSlice{testSlice("a", "web", map[string]int32{"http/TCP": 8080, "dns/UDP": 5353},
		testEndpoint{addr: "10.1.0.2", node: "n0"})}
	tree := func(svc *corev1.Service, eps []*discoveryv1.EndpointSlice) *svcT {
		trees, err := translateService(svc, eps, "n0")
		if err != nil || len(trees) != 1 {
			t.Fatalf("translate %s: %v %v", svc.Name, trees, err)
		}
		return trees[0]
	}
	api := tree(testService("api", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.12" }), nil)
	want, err := newNodeServices(map[string]map[string]*svcT{
		"red":  {"k8s/shop/web": tree(web, eps), "k8s/shop/api": api},
		"blue": {"k8s/other/x": api},
	}, "", newServiceTranslator(nil).marshal)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]map[string]*svcT{
		"red": {
			"k8s/shop/web":  tree(web, nil), // differs: no backends yet
			"k8s/shop/api":  api,            // same
			"k8s/shop/gone": api,            // no longer wanted
		},
		"green": {"k8s/shop/old": api}, // VRF the intent no longer has services in
	}
	req, pending, err := serviceSetRequest(have, want, nil)
	if err != nil {
		t.Fatal(err)
	}
	paths := func(ps []*gpb.Path) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.GetElem()[1].GetKey()["name"]+" "+p.GetElem()[3].GetKey()["name"])
		}
		return out
	}
	var replaced []*gpb.Path
	for _, u := range req.GetReplace() {
		replaced = append(replaced, u.GetPath())
	}
	if diff := cmp.Diff([]string{"green k8s/shop/old", "red k8s/shop/gone"}, paths(req.GetDelete())); diff != "" {
		t.Errorf("deletes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"red k8s/shop/web"}, paths(replaced)); diff != "" {
		t.Errorf("replaces (-want +got):\n%s", diff)
	}
	if pending != 1 {
		t.Errorf("pending %d, want 1 (blue is not on the node)", pending)
	}
	// The replaced value is the service as the node stores it.
	var back svcT
	if err := gen.Unmarshal(req.GetReplace()[0].GetVal().GetJsonIetfVal(), &back); err != nil {
		t.Fatalf("value does not parse as a service: %v", err)
	}
	if diff := cmp.Diff(describeService(want.services["red"]["k8s/shop/web"]), describeService(&back)); diff != "" {
		t.Errorf("value (-want +got):\n%s", diff)
	}

	// Refused: neither replaced nor deleted.
	req, _, err = serviceSetRequest(have, want, map[string]string{"red/k8s/shop/web": want.json["red"]["k8s/shop/web"]})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.GetReplace()) != 0 {
		t.Errorf("refused service replaced: %v", req.GetReplace())
	}

	// The node holds the intent: nothing to send.
	have = map[string]map[string]*svcT{"red": want.services["red"], "blue": want.services["blue"]}
	if req, pending, _ := serviceSetRequest(have, want, nil); req != nil || pending != 0 {
		t.Errorf("request %v pending %d once the node holds the intent", req, pending)
	}
}

// TestRefusedService: the service a node's validation error names is
// found in its message.
func TestRefusedService(t *testing.T) {
	err := status.Error(codes.InvalidArgument, "network-instances/network-instance[name=red]/services/service[name=k8s/shop/web]/backends/backend[address=10.2.0.5][port=80]/config/address: 10.2.0.5 is outside network instance \"red\"")
	if vrf, name := refusedService(err); vrf != "red" || name != "k8s/shop/web" {
		t.Errorf("refused %q %q, want red k8s/shop/web", vrf, name)
	}
	if _, name := refusedService(status.Error(codes.Unavailable, "node down")); name != "" {
		t.Errorf("refused %q for an error naming no service", name)
	}
}

func valPtr[T any](v T) *T { return &v }

// BenchmarkServicesPass is the translation part of one leader pass: 1,000
// Services with 10 endpoints each, one of them changed since the last
// pass, rendered for 20 nodes that all hold the namespace's VRF.
func BenchmarkServicesPass(b *testing.B) {
	var svcs []*corev1.Service
	eps := map[string][]*discoveryv1.EndpointSlice{}
	for i := range 1000 {
		name := fmt.Sprintf("svc%d", i)
		svcs = append(svcs, testService(name, func(s *corev1.Service) {
			s.Spec.ClusterIP = fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		}))
		var ends []testEndpoint
		for j := range 10 {
			ends = append(ends, testEndpoint{addr: fmt.Sprintf("10.1.%d.%d", j, i%250+1), node: fmt.Sprintf("n%d", j)})
		}
		eps[name] = []*discoveryv1.EndpointSlice{testSlice(name+"-a", name, map[string]int32{"http/TCP": 8080, "dns/UDP": 5353}, ends...)}
	}
	slicesOf := func(_, name string) []*discoveryv1.EndpointSlice { return eps[name] }
	vrfOf := func(string) string { return "red" }
	st := newServiceTranslator(slicesOf)
	pass := func() {
		for n := range 20 {
			trees, _ := renderNodeServices(svcs, st, vrfOf, fmt.Sprintf("n%d", n))
			if _, err := newNodeServices(trees, "", st.marshal); err != nil {
				b.Fatal(err)
			}
		}
	}
	pass() // the first pass translates everything
	for b.Loop() {
		st.pass(slicesOf)
		// One Service changed since the last pass.
		svcs[0].ResourceVersion += "1"
		pass()
		st.forget()
	}
}

// TestServiceTranslatorCache: a translation is kept from pass to pass
// while the Service and its slices keep their resource versions, and made
// again when one changes; a Service gone is forgotten.
func TestServiceTranslatorCache(t *testing.T) {
	svc := testService("web", nil)
	es := testSlice("a", "web", map[string]int32{"http/TCP": 8080, "dns/UDP": 5353}, testEndpoint{addr: "10.1.0.2", node: "n0"})
	es.ResourceVersion = "1"
	st := newServiceTranslator(nil)
	translate := func() *svcT {
		st.pass(func(string, string) []*discoveryv1.EndpointSlice { return []*discoveryv1.EndpointSlice{es} })
		trees, err := st.translate(svc, "n0")
		if err != nil || len(trees) != 1 {
			t.Fatalf("translate: %v %v", trees, err)
		}
		st.forget()
		return trees[0]
	}
	first := translate()
	if again := translate(); again != first {
		t.Errorf("unchanged Service translated again")
	}
	es = es.DeepCopy()
	es.ResourceVersion = "2"
	es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.0.3"}})
	if changed := translate(); changed == first || len(changed.GetBackends().Backend) != 2 {
		t.Errorf("slice update: %d backends, want 2 (a new translation)", len(changed.GetBackends().Backend))
	}
	st.pass(nil)
	st.forget()
	if len(st.shared) != 0 || len(st.json) != 0 {
		t.Errorf("after a pass without the Service: %d translations, %d JSON kept", len(st.shared), len(st.json))
	}
}
