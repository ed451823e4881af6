package kube

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/openconfig/ygot/ygot"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/isthmus-net/isthmus/gen"
)

type (
	svcT     = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service
	svcPortT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Ports_Port
)

// servicePrefix starts the name of every service the controller writes on
// a node: k8s/<namespace>/<name>, and k8s/<namespace>/<name>/<port> for a
// port whose target differs between backends. Services of the
// controller's VRFs with another name are the operator's.
const servicePrefix = "k8s/"

// serviceBackend is one endpoint of a Kubernetes Service: its address,
// where it runs, its conditions as the model has them, and the number each
// of the Service's ports resolves to on it (by ServicePort name).
type serviceBackend struct {
	addr                        netip.Addr
	node                        string
	ready, serving, terminating bool
	ports                       map[string]uint16
}

// endpointConditions maps an EndpointSlice endpoint's conditions to the
// model's: ready unset means ready, serving unset means what ready says,
// terminating unset means not terminating (discovery.k8s.io/v1). A
// terminating backend is never ready in the model; Kubernetes' own
// controller never marks one so, a hand-written slice might.
func endpointConditions(c discoveryv1.EndpointConditions) (ready, serving, terminating bool) {
	ready = c.Ready == nil || *c.Ready
	serving = ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	terminating = c.Terminating != nil && *c.Terminating
	return ready && !terminating, serving, terminating
}

// serviceBackends gathers the IPv4 endpoints of a Service's EndpointSlices,
// one per address (the first slice by name wins, then the first endpoint),
// sorted by address.
func serviceBackends(eps []*discoveryv1.EndpointSlice) []serviceBackend {
	eps = slices.Clone(eps)
	slices.SortFunc(eps, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	seen := map[netip.Addr]bool{}
	var out []serviceBackend
	for _, es := range eps {
		if es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		ports := map[string]uint16{}
		for _, p := range es.Ports {
			if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
				continue
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			ports[portKey(ptrString(p.Name), proto)] = uint16(*p.Port)
		}
		for _, ep := range es.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || !a.Is4() || seen[a] {
				continue
			}
			seen[a] = true
			b := serviceBackend{addr: a, node: ptrString(ep.NodeName), ports: ports}
			b.ready, b.serving, b.terminating = endpointConditions(ep.Conditions)
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b serviceBackend) int { return a.addr.Compare(b.addr) })
	return out
}

// portKey matches a ServicePort with its EndpointSlice port: same name and
// protocol.
func portKey(name string, proto corev1.Protocol) string { return name + "/" + string(proto) }

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// errNotTranslated says a Service has nothing the model can carry; its
// message says why.
type errNotTranslated struct{ why string }

func (e errNotTranslated) Error() string { return e.why }

// translateService renders one Kubernetes Service with its EndpointSlices
// as the Isthmus services node holds (pure). It returns nothing and no
// error for a Service that has no virtual address to balance (headless,
// ExternalName), and an errNotTranslated for one the model cannot carry
// (no IPv4 cluster IP, no TCP or UDP port).
//
// The mapping: the cluster IP is the address (the IPv4 one of
// clusterIPs when the first is IPv6); each TCP or UDP ServicePort
// is a port (named as in the Service, "<protocol>-<port>" when unnamed)
// whose target port is the number every backend resolves it to; a port
// that backends resolve to different numbers (a named targetPort on pods
// that differ) is a service of its own, k8s/<ns>/<name>/<port>, whose
// backends carry their own numbers. Backends are the IPv4 endpoints of the
// Service's slices with their conditions; with internalTrafficPolicy Local
// only the endpoints of node. sessionAffinity ClientIP is CLIENT_IP. The
// external-traffic scope is LOCAL when either traffic policy is Local,
// ALL otherwise (Cluster, the default).
func translateService(svc *corev1.Service, eps []*discoveryv1.EndpointSlice, node string) ([]*svcT, error) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil, nil
	}
	vip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || !vip.Is4() {
		// Dual stack with IPv6 first: the IPv4 one of clusterIPs.
		for _, ip := range svc.Spec.ClusterIPs {
			if a, perr := netip.ParseAddr(ip); perr == nil && a.Is4() {
				vip, err = a, nil
				break
			}
		}
	}
	if err != nil || !vip.Is4() {
		return nil, errNotTranslated{fmt.Sprintf("cluster ip %q is not an ipv4 address", svc.Spec.ClusterIP)}
	}
	localOnly := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	bes := serviceBackends(eps)
	if localOnly {
		bes = slices.DeleteFunc(bes, func(b serviceBackend) bool { return b.node != node })
	}
	base := servicePrefix + svc.Namespace + "/" + svc.Name
	newService := func(name string) *svcT {
		s := &svcT{Name: ygot.String(name)}
		cf := s.GetOrCreateConfig()
		cf.Name, cf.Address = ygot.String(name), ygot.String(vip.String())
		cf.SessionAffinity = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_NONE
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			cf.SessionAffinity = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_CLIENT_IP
		}
		cf.ExternalTrafficScope = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_ALL
		if localOnly || svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			cf.ExternalTrafficScope = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_LOCAL
		}
		return s
	}
	addBackend := func(s *svcT, b serviceBackend, port uint16) {
		be := s.GetOrCreateBackends().GetOrCreateBackend(b.addr.String(), port)
		cf := be.GetOrCreateConfig()
		cf.Address, cf.Port = ygot.String(b.addr.String()), ygot.Uint16(port)
		cf.Ready, cf.Serving, cf.Terminating = ygot.Bool(b.ready), ygot.Bool(b.serving), ygot.Bool(b.terminating)
		cf.Weight = ygot.Uint8(1)
	}
	var main *svcT
	var keyPort uint16 // the backends' key port in main: the first port's target
	var split []*svcT
	for _, sp := range svc.Spec.Ports {
		proto := gen.IsthmusNetworkInstance_ServiceProtocol_TCP
		switch sp.Protocol {
		case corev1.ProtocolTCP, "":
		case corev1.ProtocolUDP:
			proto = gen.IsthmusNetworkInstance_ServiceProtocol_UDP
		default:
			continue // SCTP: the model balances TCP and UDP only
		}
		name := sp.Name
		if name == "" {
			name = strings.ToLower(string(cmp.Or(sp.Protocol, corev1.ProtocolTCP))) + "-" + fmt.Sprint(sp.Port)
		}
		key := portKey(sp.Name, cmp.Or(sp.Protocol, corev1.ProtocolTCP))
		target, uniform := uint16(0), true
		for i, b := range bes {
			n := b.ports[key]
			if n == 0 || (i > 0 && n != target) {
				uniform = false
				break
			}
			target = n
		}
		if len(bes) == 0 && sp.TargetPort.IntVal > 0 {
			target = uint16(sp.TargetPort.IntVal)
		}
		port := func(s *svcT) *svcPortT {
			p := s.GetOrCreatePorts().GetOrCreatePort(name)
			cf := p.GetOrCreateConfig()
			cf.Name, cf.Protocol, cf.Port = ygot.String(name), proto, ygot.Uint16(uint16(sp.Port))
			return p
		}
		if !uniform {
			s := newService(base + "/" + name)
			port(s)
			for _, b := range bes {
				if n := b.ports[key]; n != 0 {
					addBackend(s, b, n)
				}
			}
			split = append(split, s)
			continue
		}
		if main == nil {
			main = newService(base)
			keyPort = target
		}
		if p := port(main); target != 0 {
			p.GetConfig().TargetPort = ygot.Uint16(target)
		}
	}
	if main == nil && split == nil {
		return nil, errNotTranslated{"no tcp or udp port"}
	}
	var out []*svcT
	if main != nil {
		if keyPort == 0 {
			// No backend, so no number to key them by.
			keyPort = 1
		}
		for _, b := range bes {
			addBackend(main, b, keyPort)
		}
		out = append(out, main)
	}
	return append(out, split...), nil
}

// serviceErrors are the Services not translated, by namespace/name.
type serviceErrors map[string]error

// serviceTranslator translates each Service once: a Service renders the
// same on every node unless its internalTrafficPolicy is Local, and the
// same in every pass until it or one of its EndpointSlices changes
// (resource versions). It keeps each tree's JSON too, since marshalling
// costs most. Owned by one goroutine (the leader's).
type serviceTranslator struct {
	slicesOf func(ns, name string) []*discoveryv1.EndpointSlice
	shared   map[types.UID]translation
	json     map[*svcT]string
	used     map[types.UID]bool // this pass's
}

type translation struct {
	key   string // resource versions of the Service and its slices
	trees []*svcT
	err   error
}

func newServiceTranslator(slicesOf func(ns, name string) []*discoveryv1.EndpointSlice) *serviceTranslator {
	return &serviceTranslator{slicesOf: slicesOf, shared: map[types.UID]translation{}, json: map[*svcT]string{}, used: map[types.UID]bool{}}
}

// pass starts a pass with the EndpointSlices of now.
func (st *serviceTranslator) pass(slicesOf func(ns, name string) []*discoveryv1.EndpointSlice) {
	st.slicesOf, st.used = slicesOf, map[types.UID]bool{}
}

// forget drops what the last pass did not use.
func (st *serviceTranslator) forget() {
	for uid, t := range st.shared {
		if !st.used[uid] {
			for _, s := range t.trees {
				delete(st.json, s)
			}
			delete(st.shared, uid)
		}
	}
}

// translate is translateService for node, computed once for every node
// when the node does not matter.
func (st *serviceTranslator) translate(svc *corev1.Service, node string) ([]*svcT, error) {
	eps := st.slicesOf(svc.Namespace, svc.Name)
	if p := svc.Spec.InternalTrafficPolicy; p != nil && *p == corev1.ServiceInternalTrafficPolicyLocal {
		return translateService(svc, eps, node)
	}
	if t, ok := st.shared[svc.UID]; ok && st.used[svc.UID] && svc.UID != "" {
		return t.trees, t.err // translated for another node in this pass
	}
	var key strings.Builder
	key.WriteString(svc.ResourceVersion)
	for _, es := range eps {
		key.WriteString("/" + es.Name + "@" + es.ResourceVersion)
	}
	st.used[svc.UID] = true
	t, ok := st.shared[svc.UID]
	if !ok || t.key != key.String() || svc.UID == "" {
		for _, s := range t.trees {
			delete(st.json, s)
		}
		t = translation{key: key.String()}
		t.trees, t.err = translateService(svc, eps, "")
		st.shared[svc.UID] = t
	}
	return t.trees, t.err
}

// marshal is a tree's JSON, computed once.
func (st *serviceTranslator) marshal(s *svcT) (string, error) {
	if js, ok := st.json[s]; ok {
		return js, nil
	}
	js, err := ygot.Marshal7951(s)
	if err != nil {
		return "", fmt.Errorf("marshal service %s: %w", s.GetName(), err)
	}
	st.json[s] = string(js)
	return string(js), nil
}

// renderNodeServices renders the services of one node: every Service of a
// namespace whose VRF the node holds (vrfOf: namespace → VRF on this node,
// "" when none), by VRF and service name.
func renderNodeServices(svcs []*corev1.Service, st *serviceTranslator, vrfOf func(ns string) string, node string) (map[string]map[string]*svcT, serviceErrors) {
	out := map[string]map[string]*svcT{}
	errs := serviceErrors{}
	for _, svc := range svcs {
		vrf := vrfOf(svc.Namespace)
		if vrf == "" {
			continue
		}
		trees, err := st.translate(svc, node)
		if err != nil {
			errs[svc.Namespace+"/"+svc.Name] = err
			continue
		}
		for _, t := range trees {
			if out[vrf] == nil {
				out[vrf] = map[string]*svcT{}
			}
			out[vrf][t.GetName()] = t
		}
	}
	return out, errs
}
