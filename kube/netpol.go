package kube

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// This file compiles Kubernetes NetworkPolicies into, for each pod, what
// it may send and receive: whether it is isolated in each direction and,
// if so, the rules that allow traffic. Pure: the listers feed it, and
// netpol_acl.go renders the result as Isthmus ACL configuration.

// IP protocol numbers of the protocols NetworkPolicy names.
const (
	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132
)

// policyPod is what policy needs of a pod.
type policyPod struct {
	namespace, name, node string
	labels                map[string]string
	// addr is status.podIP (invalid while unknown).
	addr netip.Addr
	// ports are the pods' named container ports.
	ports []namedPort
}

// namedPort is a named container port.
type namedPort struct {
	name   string
	proto  uint8
	number uint16
}

// policyCluster is the input of the compilation.
type policyCluster struct {
	policies []*networkingv1.NetworkPolicy
	// namespaces holds each namespace's labels.
	namespaces map[string]map[string]string
	pods       []*policyPod
	// excluded are the namespaces never attached to (the controller's
	// ExcludedNamespaces): their pods are peers of other namespaces'
	// policies, but no policy isolates them, their own included.
	excluded map[string]bool
}

// selectorTerm is one requirement on a label: op is In, NotIn, Exists or
// DoesNotExist (matchLabels become In with one value).
type selectorTerm struct {
	key    string
	op     metav1.LabelSelectorOperator
	values []string
}

// selector is a conjunction of terms; the empty selector matches all.
type selector []selectorTerm

// peerMatch is who a rule allows at the other end.
type peerMatch struct {
	// any: every address, pod or not.
	any bool
	// prefixes: addresses in these (an ipBlock, its excepts cut out);
	// block and except are the ipBlock as written.
	prefixes []netip.Prefix
	block    netip.Prefix
	except   []netip.Prefix
	// pods: pods in namespaces matching namespaces (nil: only namespace
	// ownNamespace) with labels matching pods.
	selected     bool
	ownNamespace string
	namespaces   selector // used when ownNamespace is ""
	pods         selector
	// addrs: exactly these pod addresses (egress to named ports, resolved
	// here because each destination pod names its own port).
	addrs []netip.Addr
}

// portMatch is one protocol and port range (lo = hi = 0: every port).
type portMatch struct {
	proto  uint8
	lo, hi uint16
}

// policyRule allows traffic with any of peers (none: nobody) on any of
// ports (none: nothing).
type policyRule struct {
	policy string // namespace/name, for descriptions
	peer   *peerMatch
	ports  []portMatch
}

// podPolicy is one pod's compiled policy in each direction.
type podPolicy struct {
	ingressIsolated, egressIsolated bool
	ingress, egress                 []policyRule
}

// protocolNumber maps a NetworkPolicy protocol (default TCP) to its number.
func protocolNumber(p *corev1.Protocol) (uint8, error) {
	if p == nil {
		return protoTCP, nil
	}
	switch *p {
	case corev1.ProtocolTCP:
		return protoTCP, nil
	case corev1.ProtocolUDP:
		return protoUDP, nil
	case corev1.ProtocolSCTP:
		return protoSCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", *p)
}

// selectorOf converts a label selector; nil means match everything.
func selectorOf(ls *metav1.LabelSelector) (selector, error) {
	if ls == nil {
		return nil, nil
	}
	var s selector
	for _, k := range sortedKeys(ls.MatchLabels) {
		s = append(s, selectorTerm{key: k, op: metav1.LabelSelectorOpIn, values: []string{ls.MatchLabels[k]}})
	}
	for _, e := range ls.MatchExpressions {
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				return nil, fmt.Errorf("selector on %q: operator %s needs values", e.Key, e.Operator)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
		default:
			return nil, fmt.Errorf("selector on %q: unknown operator %q", e.Key, e.Operator)
		}
		vals := slices.Clone(e.Values)
		slices.Sort(vals)
		s = append(s, selectorTerm{key: e.Key, op: e.Operator, values: vals})
	}
	return s, nil
}

// matches reports whether labels satisfy every term.
func (s selector) matches(labels map[string]string) bool {
	for _, t := range s {
		v, has := labels[t.key]
		switch t.op {
		case metav1.LabelSelectorOpIn:
			if !has || !slices.Contains(t.values, v) {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if has && slices.Contains(t.values, v) {
				return false
			}
		case metav1.LabelSelectorOpExists:
			if !has {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if has {
				return false
			}
		}
	}
	return true
}

// hasType is the policy's effective policyTypes: as listed, or Ingress,
// plus Egress when it has egress rules.
func hasType(np *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) > 0 {
		return slices.Contains(np.Spec.PolicyTypes, t)
	}
	return t == networkingv1.PolicyTypeIngress || len(np.Spec.Egress) > 0
}

// compiledPolicy is one NetworkPolicy with its selectors and rules
// converted.
type compiledPolicy struct {
	np              *networkingv1.NetworkPolicy
	key             string
	target          selector
	ingress, egress bool
	// ingressRules and egressRules are the rules that could be compiled.
	ingressRules, egressRules []compiledRule
}

// compiledRule is one rule, compiled once for every pod the policy
// selects: only an ingress named port depends on the pod.
type compiledRule struct {
	peers []*peerMatch
	// numbered are the rule's ports that need no pod to resolve them
	// ({} alone when the rule names no port: everything).
	numbered []portMatch
	// named are ingress named ports, resolved on each selected pod.
	named []portSpec
	// resolved are the egress rules to named ports, one per number, with
	// the destination pods that have it.
	resolved []policyRule
}

// policyErrors names what could not be translated, by policy.
type policyErrors map[string]error

// compilePolicies compiles every pod of the cluster: a pod selected by
// some policy for a direction is isolated in it, and then allowed exactly
// the union of those policies' rules for it. A policy that cannot be
// translated (bad selector, CIDR or port) is left out and reported, and
// the pods it selects are isolated with nothing allowed by it, so an
// error never opens more than the valid policies allow. A policy of an
// excluded namespace is not applied (policyNotices reports it), so pods
// there are never isolated; they stay peers of the other policies.
func compilePolicies(c *policyCluster) (map[*policyPod]*podPolicy, policyErrors) {
	errs := policyErrors{}
	var cps []*compiledPolicy
	for _, np := range c.policies {
		if c.excluded[np.Namespace] {
			continue
		}
		key := np.Namespace + "/" + np.Name
		sel, err := selectorOf(&np.Spec.PodSelector)
		if err != nil {
			errs[key] = fmt.Errorf("pod selector: %w", err)
			continue
		}
		cp := &compiledPolicy{np: np, key: key, target: sel,
			ingress: hasType(np, networkingv1.PolicyTypeIngress), egress: hasType(np, networkingv1.PolicyTypeEgress)}
		if cp.ingress {
			for i, r := range np.Spec.Ingress {
				cr, err := compileRule(c, cp, r.From, r.Ports, false)
				if err != nil {
					errs[key] = fmt.Errorf("ingress rule %d: %w", i, err)
					continue
				}
				cp.ingressRules = append(cp.ingressRules, cr)
			}
		}
		if cp.egress {
			for i, r := range np.Spec.Egress {
				cr, err := compileRule(c, cp, r.To, r.Ports, true)
				if err != nil {
					errs[key] = fmt.Errorf("egress rule %d: %w", i, err)
					continue
				}
				cp.egressRules = append(cp.egressRules, cr)
			}
		}
		cps = append(cps, cp)
	}
	slices.SortFunc(cps, func(a, b *compiledPolicy) int { return cmp.Compare(a.key, b.key) })
	out := make(map[*policyPod]*podPolicy, len(c.pods))
	for _, p := range c.pods {
		pp := &podPolicy{}
		for _, cp := range cps {
			if cp.np.Namespace != p.namespace || !cp.target.matches(p.labels) {
				continue
			}
			if cp.ingress {
				pp.ingressIsolated = true
				for i := range cp.ingressRules {
					pp.ingress = append(pp.ingress, cp.ingressRules[i].forPod(cp.key, p)...)
				}
			}
			if cp.egress {
				pp.egressIsolated = true
				for i := range cp.egressRules {
					pp.egress = append(pp.egress, cp.egressRules[i].forPod(cp.key, p)...)
				}
			}
		}
		out[p] = pp
	}
	return out, errs
}

// forPod is the rule as it applies to pod p, which the policy selects.
func (cr *compiledRule) forPod(policy string, p *policyPod) []policyRule {
	ports := cr.numbered
	if len(cr.named) > 0 {
		ports = slices.Clone(ports)
		for _, s := range cr.named {
			if n, ok := p.namedPort(s.name, s.proto); ok {
				ports = append(ports, portMatch{proto: s.proto, lo: n, hi: n})
			}
		}
	}
	var rules []policyRule
	if len(ports) > 0 {
		for _, m := range cr.peers {
			rules = append(rules, policyRule{policy: policy, peer: m, ports: ports})
		}
	}
	return append(rules, cr.resolved...)
}

// portSpec is one NetworkPolicyPort, number or name.
type portSpec struct {
	proto  uint8
	all    bool
	lo, hi uint16
	name   string
}

func portSpecs(ports []networkingv1.NetworkPolicyPort) ([]portSpec, error) {
	var out []portSpec
	for i, p := range ports {
		proto, err := protocolNumber(p.Protocol)
		if err != nil {
			return nil, fmt.Errorf("port %d: %w", i, err)
		}
		ps := portSpec{proto: proto}
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				return nil, fmt.Errorf("port %d: endPort without port", i)
			}
			ps.all = true
		case p.Port.Type == 1: // intstr.String
			if p.EndPort != nil {
				return nil, fmt.Errorf("port %d: endPort with the named port %q", i, p.Port.StrVal)
			}
			if p.Port.StrVal == "" {
				return nil, fmt.Errorf("port %d: empty port name", i)
			}
			ps.name = p.Port.StrVal
		default:
			lo := p.Port.IntVal
			hi := lo
			if p.EndPort != nil {
				hi = *p.EndPort
			}
			if lo < 1 || lo > 65535 || hi < lo || hi > 65535 {
				return nil, fmt.Errorf("port %d: range %d-%d out of order or out of 1-65535", i, lo, hi)
			}
			ps.lo, ps.hi = uint16(lo), uint16(hi)
		}
		out = append(out, ps)
	}
	return out, nil
}

// compileRule compiles one rule of policy cp. Egress named ports are
// each destination pod's, so such a port becomes one rule per number.
func compileRule(c *policyCluster, cp *compiledPolicy, peers []networkingv1.NetworkPolicyPeer,
	ports []networkingv1.NetworkPolicyPort, egress bool) (compiledRule, error) {
	var cr compiledRule
	specs, err := portSpecs(ports)
	if err != nil {
		return cr, err
	}
	cr.peers = []*peerMatch{{any: true}}
	if len(peers) > 0 {
		cr.peers = cr.peers[:0]
		for i, pr := range peers {
			m, err := peerOf(cp.np.Namespace, pr)
			if err != nil {
				return cr, fmt.Errorf("peer %d: %w", i, err)
			}
			cr.peers = append(cr.peers, &m)
		}
	}
	var egressNamed []portSpec
	for _, s := range specs {
		switch {
		case s.all:
			cr.numbered = append(cr.numbered, portMatch{proto: s.proto})
		case s.name == "":
			cr.numbered = append(cr.numbered, portMatch{proto: s.proto, lo: s.lo, hi: s.hi})
		case !egress:
			cr.named = append(cr.named, s)
		default:
			egressNamed = append(egressNamed, s)
		}
	}
	if len(specs) == 0 {
		cr.numbered = []portMatch{{}}
	}
	// Egress to a named port: every pod the peers match that names the
	// port, at its own number.
	for _, s := range egressNamed {
		byNumber := map[uint16][]netip.Addr{}
		for _, dst := range c.pods {
			n, ok := dst.namedPort(s.name, s.proto)
			if !ok || !dst.addr.IsValid() || !slices.ContainsFunc(cr.peers, func(m *peerMatch) bool { return c.peerHas(m, dst) }) {
				continue
			}
			byNumber[n] = append(byNumber[n], dst.addr)
		}
		for _, n := range slices.Sorted(maps.Keys(byNumber)) {
			addrs := byNumber[n]
			slices.SortFunc(addrs, netip.Addr.Compare)
			cr.resolved = append(cr.resolved, policyRule{policy: cp.key, peer: &peerMatch{addrs: slices.Compact(addrs)},
				ports: []portMatch{{proto: s.proto, lo: n, hi: n}}})
		}
	}
	return cr, nil
}

// namedPort resolves a container port name for a protocol.
func (p *policyPod) namedPort(name string, proto uint8) (uint16, bool) {
	for _, np := range p.ports {
		if np.name == name && np.proto == proto {
			return np.number, true
		}
	}
	return 0, false
}

// peerOf converts one peer of a policy in namespace ns.
func peerOf(ns string, pr networkingv1.NetworkPolicyPeer) (peerMatch, error) {
	if pr.IPBlock != nil {
		if pr.PodSelector != nil || pr.NamespaceSelector != nil {
			return peerMatch{}, fmt.Errorf("ipBlock with a selector")
		}
		cidr, err := netip.ParsePrefix(pr.IPBlock.CIDR)
		if err != nil {
			return peerMatch{}, fmt.Errorf("ipBlock cidr: %w", err)
		}
		if !cidr.Addr().Is4() {
			// IPv6 blocks allow nothing here: the VRFs carry IPv4 only.
			return peerMatch{}, nil
		}
		var except []netip.Prefix
		for _, e := range pr.IPBlock.Except {
			ep, err := netip.ParsePrefix(e)
			if err != nil {
				return peerMatch{}, fmt.Errorf("ipBlock except: %w", err)
			}
			if ep.Addr().Is4() {
				except = append(except, ep.Masked())
			}
		}
		return peerMatch{prefixes: subtractPrefixes(cidr.Masked(), except), block: cidr.Masked(), except: except}, nil
	}
	m := peerMatch{selected: true}
	var err error
	if m.pods, err = selectorOf(pr.PodSelector); err != nil {
		return m, fmt.Errorf("pod selector: %w", err)
	}
	if pr.NamespaceSelector == nil {
		m.ownNamespace = ns
	} else if m.namespaces, err = selectorOf(pr.NamespaceSelector); err != nil {
		return m, fmt.Errorf("namespace selector: %w", err)
	}
	return m, nil
}

// peerHas reports whether pod dst is one of m's.
func (c *policyCluster) peerHas(m *peerMatch, dst *policyPod) bool {
	switch {
	case m.any:
		return true
	case m.selected:
		if m.ownNamespace != "" && dst.namespace != m.ownNamespace {
			return false
		}
		if m.ownNamespace == "" && !m.namespaces.matches(c.namespaces[dst.namespace]) {
			return false
		}
		return m.pods.matches(dst.labels)
	case m.addrs != nil:
		return slices.Contains(m.addrs, dst.addr)
	}
	return dst.addr.IsValid() && slices.ContainsFunc(m.prefixes, func(p netip.Prefix) bool { return p.Contains(dst.addr) })
}

// subtractPrefixes returns cidr without the except prefixes, as a sorted
// list of disjoint prefixes.
func subtractPrefixes(cidr netip.Prefix, except []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{cidr}
	for _, e := range except {
		var next []netip.Prefix
		for _, p := range out {
			next = append(next, subtractOne(p, e)...)
		}
		out = next
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return out
}

// subtractOne returns p without e.
func subtractOne(p, e netip.Prefix) []netip.Prefix {
	if !p.Overlaps(e) {
		return []netip.Prefix{p}
	}
	if e.Bits() <= p.Bits() {
		return nil // e covers p
	}
	// Split p in halves until the half holding e is e itself.
	var out []netip.Prefix
	for p.Bits() < e.Bits() {
		lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
		hiAddr := ipv4Uint(p.Addr()) | 1<<(31-p.Bits())
		hi := netip.PrefixFrom(uint32IPv4(hiAddr), p.Bits()+1)
		if lo.Contains(e.Addr()) {
			out = append(out, hi)
			p = lo
		} else {
			out = append(out, lo)
			p = hi
		}
	}
	return out
}

// podKey names a pod.
func podKey(ns, name string) string { return ns + "/" + name }

// policyPodOf extracts what policy needs of a pod.
func policyPodOf(p *corev1.Pod) *policyPod {
	pp := &policyPod{namespace: p.Namespace, name: p.Name, node: p.Spec.NodeName, labels: p.Labels}
	if a, err := netip.ParseAddr(p.Status.PodIP); err == nil && a.Is4() {
		pp.addr = a
	}
	for _, ct := range p.Spec.Containers {
		for _, cp := range ct.Ports {
			if cp.Name == "" || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
				continue
			}
			proto, err := protocolNumber(&cp.Protocol)
			if cp.Protocol == "" {
				proto, err = protoTCP, nil
			}
			if err != nil {
				continue
			}
			pp.ports = append(pp.ports, namedPort{name: cp.Name, proto: proto, number: uint16(cp.ContainerPort)})
		}
	}
	return pp
}
