package kube

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The truth-table cluster: namespaces x, y and z, pods a, b and c in each,
// every pod serving TCP and UDP on ports 80 and 81. Each case is a set of
// NetworkPolicies; the expected reachability comes from the reference
// evaluator, and tests check the translation (simulated) and the real
// dataplane (probed) against it.

// NetpolNamespaces and NetpolPods name the cluster's namespaces and pods.
var (
	NetpolNamespaces = []string{"x", "y", "z"}
	NetpolPods       = []string{"a", "b", "c"}
)

// NetpolPorts are the ports every pod serves, over TCP and UDP.
var NetpolPorts = []int32{80, 81}

// NetpolProbe is one kind of probe: a protocol and a destination port.
type NetpolProbe struct {
	Proto corev1.Protocol
	Port  int32
}

// NetpolProbes are the probes sent between every ordered pair of pods.
var NetpolProbes = []NetpolProbe{{corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 81}, {corev1.ProtocolUDP, 80}, {corev1.ProtocolUDP, 81}}

// NetpolFixture is the cluster with its pods' addresses.
type NetpolFixture struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	// Block is a prefix holding every pod address.
	Block netip.Prefix
}

// NewNetpolFixture builds the cluster's objects; addr gives each pod's
// address, block covers them all.
func NewNetpolFixture(block netip.Prefix, addr func(ns, pod string) netip.Addr) *NetpolFixture {
	f := &NetpolFixture{Block: block}
	for _, ns := range NetpolNamespaces {
		f.Namespaces = append(f.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"ns": ns, "kubernetes.io/metadata.name": ns}}})
		for _, name := range NetpolPods {
			f.Pods = append(f.Pods, NetpolPod(ns, name, addr(ns, name)))
		}
	}
	return f
}

// NetpolPod is pod name of namespace ns: labels pod=<name> and, for a and
// b, tier web and db; named ports serve-<port>-<tcp|udp> for every port,
// and "http", which is TCP 80 on a and b but TCP 81 on c.
func NetpolPod(ns, name string, addr netip.Addr) *corev1.Pod {
	labels := map[string]string{"pod": name}
	switch name {
	case "a":
		labels["tier"] = "web"
	case "b":
		labels["tier"] = "db"
	}
	var ports []corev1.ContainerPort
	for _, p := range NetpolPorts {
		ports = append(ports,
			corev1.ContainerPort{Name: fmt.Sprintf("serve-%d-tcp", p), ContainerPort: p, Protocol: corev1.ProtocolTCP},
			corev1.ContainerPort{Name: fmt.Sprintf("serve-%d-udp", p), ContainerPort: p, Protocol: corev1.ProtocolUDP})
	}
	http := int32(80)
	if name == "c" {
		http = 81
	}
	ports = append(ports, corev1.ContainerPort{Name: "http", ContainerPort: http})
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "isthmus.dev/none:0",
			ImagePullPolicy: corev1.PullNever, Ports: ports}}},
	}
	if addr.IsValid() {
		p.Status.PodIP = addr.String()
		p.Status.PodIPs = []corev1.PodIP{{IP: addr.String()}}
	}
	return p
}

// Pod returns pod ns/name.
func (f *NetpolFixture) Pod(ns, name string) *corev1.Pod {
	for _, p := range f.Pods {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	panic("no pod " + ns + "/" + name)
}

func (f *NetpolFixture) addr32(ns, name string) string {
	return f.Pod(ns, name).Status.PodIP + "/32"
}

// Expected is the truth table of a set of policies: for every ordered pair
// of distinct pods and every probe, whether the connection is allowed,
// keyed by NetpolKey.
func (f *NetpolFixture) Expected(pols []*networkingv1.NetworkPolicy) map[string]bool {
	rc := RefCluster{Policies: pols, Namespaces: map[string]*corev1.Namespace{}}
	for _, ns := range f.Namespaces {
		rc.Namespaces[ns.Name] = ns
	}
	out := map[string]bool{}
	for _, src := range f.Pods {
		for _, dst := range f.Pods {
			if src == dst {
				continue
			}
			for _, pr := range NetpolProbes {
				out[NetpolKey(src, dst, pr)] = rc.RefAllows(
					RefEndpoint{Pod: src, Addr: netip.MustParseAddr(src.Status.PodIP)},
					RefEndpoint{Pod: dst, Addr: netip.MustParseAddr(dst.Status.PodIP)}, pr.Proto, pr.Port)
			}
		}
	}
	return out
}

// Isolation says, for every pod ("namespace/name"), whether policies
// isolate it for ingress and for egress.
func (f *NetpolFixture) Isolation(pols []*networkingv1.NetworkPolicy) map[string][2]bool {
	rc := RefCluster{Policies: pols}
	out := map[string][2]bool{}
	for _, p := range f.Pods {
		out[p.Namespace+"/"+p.Name] = [2]bool{rc.RefIsolated(p, networkingv1.PolicyTypeIngress), rc.RefIsolated(p, networkingv1.PolicyTypeEgress)}
	}
	return out
}

// NetpolKey names one probe of the truth table.
func NetpolKey(src, dst *corev1.Pod, pr NetpolProbe) string {
	return fmt.Sprintf("%s/%s→%s/%s %s/%d", src.Namespace, src.Name, dst.Namespace, dst.Name, pr.Proto, pr.Port)
}

// NetpolCase is one row group of the truth table: policies and a name.
type NetpolCase struct {
	Name     string
	Policies func(f *NetpolFixture) []*networkingv1.NetworkPolicy
}

func np(ns, name string, target metav1.LabelSelector, types []networkingv1.PolicyType,
	in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: target, PolicyTypes: types, Ingress: in, Egress: eg}}
}

func sel(kv ...string) metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return metav1.LabelSelector{MatchLabels: m}
}

func selp(kv ...string) *metav1.LabelSelector { s := sel(kv...); return &s }

func expr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func port(proto corev1.Protocol, p int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func portRange(proto corev1.Protocol, lo, hi int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(lo)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v, EndPort: &hi}
}

func portName(proto *corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: proto, Port: &v}
}

func anyPort(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	bothTypes   = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	tcp, udp    = corev1.ProtocolTCP, corev1.ProtocolUDP
	sctp        = corev1.ProtocolSCTP
)

type (
	inRule  = networkingv1.NetworkPolicyIngressRule
	egRule  = networkingv1.NetworkPolicyEgressRule
	peer    = networkingv1.NetworkPolicyPeer
	npPorts = []networkingv1.NetworkPolicyPort
)

// NetpolCases are the truth-table cases.
func NetpolCases() []NetpolCase {
	all := metav1.LabelSelector{}
	one := func(p *networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{p}
	}
	return []NetpolCase{
		{"no policy", func(*NetpolFixture) []*networkingv1.NetworkPolicy { return nil }},
		{"allow all ingress", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "allow-all", all, nil, []inRule{{}}, nil))
		}},
		{"default deny ingress", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "deny", all, ingressOnly, nil, nil))
		}},
		{"default deny egress (replies to x still pass)", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "deny", all, egressOnly, nil, nil))
		}},
		{"default deny all", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("y", "deny", all, bothTypes, nil, nil))
		}},
		{"pod selector in own namespace", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "from-b", sel("pod", "a"), nil, []inRule{{From: []peer{{PodSelector: selp("pod", "b")}}}}, nil))
		}},
		{"namespace selector", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "from-y", sel("pod", "a"), nil, []inRule{{From: []peer{{NamespaceSelector: selp("ns", "y")}}}}, nil))
		}},
		{"namespace and pod selector in one peer (In)", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "and", sel("pod", "a"), nil, []inRule{{From: []peer{{
				NamespaceSelector: expr("ns", metav1.LabelSelectorOpIn, "y", "z"), PodSelector: selp("pod", "b")}}}}, nil))
		}},
		{"pod selector or namespace selector", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "or", sel("pod", "a"), nil, []inRule{{From: []peer{
				{PodSelector: selp("pod", "b")}, {NamespaceSelector: selp("ns", "y")}}}}, nil))
		}},
		{"numbered port", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "tcp-80", sel("pod", "a"), nil, []inRule{{Ports: npPorts{port(tcp, 80)}}}, nil))
		}},
		{"named UDP port from all namespaces", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "udp-81", sel("pod", "a"), nil, []inRule{{
				From: []peer{{NamespaceSelector: &metav1.LabelSelector{}}}, Ports: npPorts{portName(&udp, "serve-81-udp")}}}, nil))
		}},
		{"named port resolving per pod", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "http", all, nil, []inRule{{Ports: npPorts{portName(nil, "http")}}}, nil))
		}},
		{"egress to a named port of pods in another namespace", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "to-y-http", sel("pod", "a"), egressOnly, nil, []egRule{{
				To: []peer{{NamespaceSelector: selp("ns", "y")}}, Ports: npPorts{portName(&tcp, "http")}}}))
		}},
		{"egress by port and namespace", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "egress", sel("pod", "a"), egressOnly, nil, []egRule{
				{Ports: npPorts{port(udp, 80)}},
				{To: []peer{{NamespaceSelector: selp("ns", "z")}}, Ports: npPorts{port(tcp, 81)}}}))
		}},
		{"port ranges", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("y", "ranges", all, nil, []inRule{{Ports: npPorts{portRange(tcp, 80, 81), portRange(udp, 81, 100)}}}, nil))
		}},
		{"ipBlock with except (ingress)", func(f *NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "block", sel("pod", "a"), nil, []inRule{{From: []peer{{IPBlock: &networkingv1.IPBlock{
				CIDR: f.Block.String(), Except: []string{f.addr32("y", "b"), f.addr32("z", "c")}}}}}}, nil))
		}},
		{"ipBlock except allowed by another peer (egress)", func(f *NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("y", "block", all, egressOnly, nil, []egRule{{To: []peer{
				{IPBlock: &networkingv1.IPBlock{CIDR: f.Block.String(), Except: []string{f.addr32("x", "c"), f.addr32("z", "a")}}},
				{NamespaceSelector: selp("ns", "x"), PodSelector: selp("pod", "c")}}}}))
		}},
		{"ingress and egress in one policy", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "both", sel("pod", "b"), bothTypes,
				[]inRule{{From: []peer{{NamespaceSelector: selp("ns", "z")}}}},
				[]egRule{{To: []peer{{NamespaceSelector: selp("ns", "z")}}}}))
		}},
		{"stacked policies union", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				np("x", "from-y", sel("pod", "a"), nil, []inRule{{From: []peer{{NamespaceSelector: selp("ns", "y")}}}}, nil),
				np("x", "from-c", sel("pod", "a"), nil, []inRule{{From: []peer{{PodSelector: selp("pod", "c")}}, Ports: npPorts{port(udp, 81)}}}, nil),
			}
		}},
		{"allow all beside deny all", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				np("y", "deny", all, bothTypes, nil, nil),
				np("y", "allow-in", all, nil, []inRule{{}}, nil),
				np("y", "allow-out", all, egressOnly, nil, []egRule{{}}),
			}
		}},
		{"namespace selector NotIn", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("z", "not-x", all, nil, []inRule{{From: []peer{{NamespaceSelector: expr("ns", metav1.LabelSelectorOpNotIn, "x")}}}}, nil))
		}},
		{"pod selector Exists and DoesNotExist", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return []*networkingv1.NetworkPolicy{
				np("y", "untiered", sel("pod", "c"), nil, []inRule{{From: []peer{{
					NamespaceSelector: &metav1.LabelSelector{}, PodSelector: expr("tier", metav1.LabelSelectorOpDoesNotExist)}}}}, nil),
				np("z", "tiered", sel("pod", "c"), nil, []inRule{{From: []peer{{
					NamespaceSelector: &metav1.LabelSelector{}, PodSelector: expr("tier", metav1.LabelSelectorOpExists)}}}}, nil),
			}
		}},
		{"egress deny wins over an open destination", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("z", "only-z", sel("pod", "a"), egressOnly, nil, []egRule{{To: []peer{{PodSelector: &metav1.LabelSelector{}}}}}))
		}},
		{"one protocol, every port", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("x", "udp-only", sel("pod", "c"), nil, []inRule{{Ports: npPorts{anyPort(udp)}}}, nil))
		}},
		{"SCTP only isolates for TCP and UDP", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("y", "sctp", sel("pod", "a"), nil, []inRule{{Ports: npPorts{anyPort(sctp)}}}, nil))
		}},
		{"egress rules without policyTypes isolate both ways", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("z", "implied", sel("pod", "b"), nil, nil, []egRule{{To: []peer{{NamespaceSelector: selp("ns", "x")}}}}))
		}},
		{"default namespace name label", func(*NetpolFixture) []*networkingv1.NetworkPolicy {
			return one(np("z", "from-y", all, nil, []inRule{{From: []peer{{
				NamespaceSelector: selp("kubernetes.io/metadata.name", "y"), PodSelector: expr("tier", metav1.LabelSelectorOpIn, "web", "db")}}}}, nil))
		}},
	}
}
