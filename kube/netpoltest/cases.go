package netpoltest

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Case is one row group of the truth table: policies and a name.
type Case struct {
	Name     string
	Policies func(f *Fixture) []*networkingv1.NetworkPolicy
}

// Policy is NetworkPolicy ns/name selecting target, with policyTypes
// types (nil: implied by the rules) and rules in and eg.
func Policy(ns, name string, target metav1.LabelSelector, types []networkingv1.PolicyType,
	in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: target, PolicyTypes: types, Ingress: in, Egress: eg}}
}

// Match is a selector of labels given as key, value, key, value...
func Match(kv ...string) metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return metav1.LabelSelector{MatchLabels: m}
}

// MatchRef is Match as a pointer, for peers.
func MatchRef(kv ...string) *metav1.LabelSelector { s := Match(kv...); return &s }

// Expr is a selector of one expression.
func Expr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// Port is a numbered port.
func Port(proto corev1.Protocol, p int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

// PortRange is the ports lo to hi (endPort).
func PortRange(proto corev1.Protocol, lo, hi int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(lo)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v, EndPort: &hi}
}

// NamedPort is a named port; proto nil means the API's default, TCP.
func NamedPort(proto *corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: proto, Port: &v}
}

// AnyPort is every port of proto.
func AnyPort(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

// Policy types as a policy lists them.
var (
	IngressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	EgressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	BothTypes   = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)

var tcp, udp, sctp = corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP

type (
	inRule  = networkingv1.NetworkPolicyIngressRule
	egRule  = networkingv1.NetworkPolicyEgressRule
	peer    = networkingv1.NetworkPolicyPeer
	npPorts = []networkingv1.NetworkPolicyPort
)

// Cases are the truth-table cases.
func Cases() []Case {
	all := metav1.LabelSelector{}
	one := func(p *networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{p}
	}
	return []Case{
		{"no policy", func(*Fixture) []*networkingv1.NetworkPolicy { return nil }},
		{"allow all ingress", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "allow-all", all, nil, []inRule{{}}, nil))
		}},
		{"default deny ingress", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "deny", all, IngressOnly, nil, nil))
		}},
		{"default deny egress (replies to x still pass)", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "deny", all, EgressOnly, nil, nil))
		}},
		{"default deny all", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("y", "deny", all, BothTypes, nil, nil))
		}},
		{"pod selector in own namespace", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "from-b", Match("pod", "a"), nil, []inRule{{From: []peer{{PodSelector: MatchRef("pod", "b")}}}}, nil))
		}},
		{"namespace selector", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "from-y", Match("pod", "a"), nil, []inRule{{From: []peer{{NamespaceSelector: MatchRef("ns", "y")}}}}, nil))
		}},
		{"namespace and pod selector in one peer (In)", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "and", Match("pod", "a"), nil, []inRule{{From: []peer{{
				NamespaceSelector: Expr("ns", metav1.LabelSelectorOpIn, "y", "z"), PodSelector: MatchRef("pod", "b")}}}}, nil))
		}},
		{"pod selector or namespace selector", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "or", Match("pod", "a"), nil, []inRule{{From: []peer{
				{PodSelector: MatchRef("pod", "b")}, {NamespaceSelector: MatchRef("ns", "y")}}}}, nil))
		}},
		{"numbered port", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "tcp-80", Match("pod", "a"), nil, []inRule{{Ports: npPorts{Port(tcp, 80)}}}, nil))
		}},
		{"named UDP port from all namespaces", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "udp-81", Match("pod", "a"), nil, []inRule{{
				From: []peer{{NamespaceSelector: &metav1.LabelSelector{}}}, Ports: npPorts{NamedPort(&udp, "serve-81-udp")}}}, nil))
		}},
		{"named port resolving per pod", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "http", all, nil, []inRule{{Ports: npPorts{NamedPort(nil, "http")}}}, nil))
		}},
		{"egress to a named port of pods in another namespace", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "to-y-http", Match("pod", "a"), EgressOnly, nil, []egRule{{
				To: []peer{{NamespaceSelector: MatchRef("ns", "y")}}, Ports: npPorts{NamedPort(&tcp, "http")}}}))
		}},
		{"egress by port and namespace", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "egress", Match("pod", "a"), EgressOnly, nil, []egRule{
				{Ports: npPorts{Port(udp, 80)}},
				{To: []peer{{NamespaceSelector: MatchRef("ns", "z")}}, Ports: npPorts{Port(tcp, 81)}}}))
		}},
		{"port ranges", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("y", "ranges", all, nil, []inRule{{Ports: npPorts{PortRange(tcp, 80, 81), PortRange(udp, 81, 100)}}}, nil))
		}},
		{"ipBlock with except (ingress)", func(f *Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "block", Match("pod", "a"), nil, []inRule{{From: []peer{{IPBlock: &networkingv1.IPBlock{
				CIDR: f.Block.String(), Except: []string{f.HostPrefix("y", "b"), f.HostPrefix("z", "c")}}}}}}, nil))
		}},
		{"ipBlock except allowed by another peer (egress)", func(f *Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("y", "block", all, EgressOnly, nil, []egRule{{To: []peer{
				{IPBlock: &networkingv1.IPBlock{CIDR: f.Block.String(), Except: []string{f.HostPrefix("x", "c"), f.HostPrefix("z", "a")}}},
				{NamespaceSelector: MatchRef("ns", "x"), PodSelector: MatchRef("pod", "c")}}}}))
		}},
		{"ingress and egress in one policy", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "both", Match("pod", "b"), BothTypes,
				[]inRule{{From: []peer{{NamespaceSelector: MatchRef("ns", "z")}}}},
				[]egRule{{To: []peer{{NamespaceSelector: MatchRef("ns", "z")}}}}))
		}},
		{"stacked policies union", func(*Fixture) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				Policy("x", "from-y", Match("pod", "a"), nil, []inRule{{From: []peer{{NamespaceSelector: MatchRef("ns", "y")}}}}, nil),
				Policy("x", "from-c", Match("pod", "a"), nil, []inRule{{From: []peer{{PodSelector: MatchRef("pod", "c")}}, Ports: npPorts{Port(udp, 81)}}}, nil),
			}
		}},
		{"allow all beside deny all", func(*Fixture) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				Policy("y", "deny", all, BothTypes, nil, nil),
				Policy("y", "allow-in", all, nil, []inRule{{}}, nil),
				Policy("y", "allow-out", all, EgressOnly, nil, []egRule{{}}),
			}
		}},
		{"namespace selector NotIn", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("z", "not-x", all, nil, []inRule{{From: []peer{{NamespaceSelector: Expr("ns", metav1.LabelSelectorOpNotIn, "x")}}}}, nil))
		}},
		{"pod selector Exists and DoesNotExist", func(*Fixture) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				Policy("y", "untiered", Match("pod", "c"), nil, []inRule{{From: []peer{{
					NamespaceSelector: &metav1.LabelSelector{}, PodSelector: Expr("tier", metav1.LabelSelectorOpDoesNotExist)}}}}, nil),
				Policy("z", "tiered", Match("pod", "c"), nil, []inRule{{From: []peer{{
					NamespaceSelector: &metav1.LabelSelector{}, PodSelector: Expr("tier", metav1.LabelSelectorOpExists)}}}}, nil),
			}
		}},
		{"egress deny wins over an open destination", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("z", "only-z", Match("pod", "a"), EgressOnly, nil, []egRule{{To: []peer{{PodSelector: &metav1.LabelSelector{}}}}}))
		}},
		{"one protocol, every port", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("x", "udp-only", Match("pod", "c"), nil, []inRule{{Ports: npPorts{AnyPort(udp)}}}, nil))
		}},
		{"SCTP only isolates for TCP and UDP", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("y", "sctp", Match("pod", "a"), nil, []inRule{{Ports: npPorts{AnyPort(sctp)}}}, nil))
		}},
		{"egress rules without policyTypes isolate both ways", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("z", "implied", Match("pod", "b"), nil, nil, []egRule{{To: []peer{{NamespaceSelector: MatchRef("ns", "x")}}}}))
		}},
		{"default namespace name label", func(*Fixture) []*networkingv1.NetworkPolicy {
			return one(Policy("z", "from-y", all, nil, []inRule{{From: []peer{{
				NamespaceSelector: MatchRef("kubernetes.io/metadata.name", "y"), PodSelector: Expr("tier", metav1.LabelSelectorOpIn, "web", "db")}}}}, nil))
		}},
	}
}
