package netpoltest

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Namespaces and Pods name the cluster's namespaces and pods.
var (
	Namespaces = []string{"x", "y", "z"}
	Pods       = []string{"a", "b", "c"}
)

// Ports are the ports every pod serves, over TCP and UDP.
var Ports = []int32{80, 81}

// Probe is one kind of probe: a protocol and a destination port.
type Probe struct {
	Proto corev1.Protocol
	Port  int32
}

// Probes are the probes sent between every ordered pair of pods.
var Probes = []Probe{{corev1.ProtocolTCP, 80}, {corev1.ProtocolTCP, 81}, {corev1.ProtocolUDP, 80}, {corev1.ProtocolUDP, 81}}

// Fixture is the cluster with its pods' addresses.
type Fixture struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	// Block is a prefix holding every pod address.
	Block netip.Prefix
}

// NewFixture builds the cluster's objects; addr gives each pod's
// address, block covers them all.
func NewFixture(block netip.Prefix, addr func(ns, pod string) netip.Addr) *Fixture {
	f := &Fixture{Block: block}
	for _, ns := range Namespaces {
		f.Namespaces = append(f.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"ns": ns, "kubernetes.io/metadata.name": ns}}})
		for _, name := range Pods {
			f.Pods = append(f.Pods, NewPod(ns, name, addr(ns, name)))
		}
	}
	return f
}

// NewPod is pod name of namespace ns: labels pod=<name> and, for a and
// b, tier web and db; named ports serve-<port>-<tcp|udp> for every port,
// and "http", which is TCP 80 on a and b but TCP 81 on c.
func NewPod(ns, name string, addr netip.Addr) *corev1.Pod {
	labels := map[string]string{"pod": name}
	switch name {
	case "a":
		labels["tier"] = "web"
	case "b":
		labels["tier"] = "db"
	}
	var ports []corev1.ContainerPort
	for _, p := range Ports {
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
func (f *Fixture) Pod(ns, name string) *corev1.Pod {
	for _, p := range f.Pods {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	panic("no pod " + ns + "/" + name)
}

// HostPrefix is the /32 of pod ns/name, as an ipBlock names it.
func (f *Fixture) HostPrefix(ns, name string) string {
	return f.Pod(ns, name).Status.PodIP + "/32"
}

// Expected is the truth table of a set of policies: for every ordered pair
// of distinct pods and every probe, whether the connection is allowed,
// keyed by Key.
func (f *Fixture) Expected(pols []*networkingv1.NetworkPolicy) map[string]bool {
	rc := Cluster{Policies: pols, Namespaces: map[string]*corev1.Namespace{}}
	for _, ns := range f.Namespaces {
		rc.Namespaces[ns.Name] = ns
	}
	out := map[string]bool{}
	for _, src := range f.Pods {
		for _, dst := range f.Pods {
			if src == dst {
				continue
			}
			for _, pr := range Probes {
				out[Key(src, dst, pr)] = rc.Allows(
					Endpoint{Pod: src, Addr: netip.MustParseAddr(src.Status.PodIP)},
					Endpoint{Pod: dst, Addr: netip.MustParseAddr(dst.Status.PodIP)}, pr.Proto, pr.Port)
			}
		}
	}
	return out
}

// Isolation says, for every pod ("namespace/name"), whether policies
// isolate it for ingress and for egress.
func (f *Fixture) Isolation(pols []*networkingv1.NetworkPolicy) map[string][2]bool {
	rc := Cluster{Policies: pols}
	out := map[string][2]bool{}
	for _, p := range f.Pods {
		out[p.Namespace+"/"+p.Name] = [2]bool{rc.Isolated(p, networkingv1.PolicyTypeIngress), rc.Isolated(p, networkingv1.PolicyTypeEgress)}
	}
	return out
}

// Key names one probe of the truth table.
func Key(src, dst *corev1.Pod, pr Probe) string {
	return fmt.Sprintf("%s/%s→%s/%s %s/%d", src.Namespace, src.Name, dst.Namespace, dst.Name, pr.Proto, pr.Port)
}
