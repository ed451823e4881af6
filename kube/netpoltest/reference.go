package netpoltest

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// This file is a reference evaluator of Kubernetes NetworkPolicy: it says
// whether a connection is allowed, straight from the API's definitions,
// sharing no code with the controller's translation (kube/netpol.go) that
// it checks. Tests compare what the translated ACLs do (simulated, in the
// kernel, or through a real cluster) with what it says.

// Endpoint is one end of a connection: a pod, or an address outside the
// cluster (Pod nil).
type Endpoint struct {
	Pod  *corev1.Pod
	Addr netip.Addr
}

// Cluster is what NetworkPolicy semantics depend on.
type Cluster struct {
	Policies   []*networkingv1.NetworkPolicy
	Namespaces map[string]*corev1.Namespace
}

// Allows reports whether the cluster's policies allow a connection from
// src to dst on protocol proto and destination port port: the source's
// egress (when src is a pod) and the destination's ingress (when dst is a
// pod) must both allow it.
func (c Cluster) Allows(src, dst Endpoint, proto corev1.Protocol, port int32) bool {
	if src.Pod != nil && !c.allowed(src.Pod, networkingv1.PolicyTypeEgress, dst, dst, proto, port) {
		return false
	}
	if dst.Pod != nil && !c.allowed(dst.Pod, networkingv1.PolicyTypeIngress, src, dst, proto, port) {
		return false
	}
	return true
}

// Isolated reports whether some policy selects pod for direction dir.
func (c Cluster) Isolated(pod *corev1.Pod, dir networkingv1.PolicyType) bool {
	for _, np := range c.Policies {
		if np.Namespace != pod.Namespace || !hasType(np, dir) {
			continue
		}
		if sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err == nil && sel.Matches(labels.Set(pod.Labels)) {
			return true
		}
	}
	return false
}

// allowed: pod's direction dir, peer is the other end, target the
// destination (named ports are the destination pod's).
func (c Cluster) allowed(pod *corev1.Pod, dir networkingv1.PolicyType, peer, target Endpoint, proto corev1.Protocol, port int32) bool {
	isolated := false
	for _, np := range c.Policies {
		if np.Namespace != pod.Namespace || !hasType(np, dir) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				if c.peersMatch(np.Namespace, r.From, peer) && portsMatch(r.Ports, target, proto, port) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Egress {
				if c.peersMatch(np.Namespace, r.To, peer) && portsMatch(r.Ports, target, proto, port) {
					return true
				}
			}
		}
	}
	return !isolated
}

// hasType is the policy's effective policyTypes: as given, or Ingress
// plus Egress when it has egress rules.
func hasType(np *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) > 0 {
		for _, t := range np.Spec.PolicyTypes {
			if t == dir {
				return true
			}
		}
		return false
	}
	return dir == networkingv1.PolicyTypeIngress || len(np.Spec.Egress) > 0
}

func (c Cluster) peersMatch(ns string, peers []networkingv1.NetworkPolicyPeer, ep Endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
			if err != nil || !cidr.Contains(ep.Addr) {
				continue
			}
			excluded := false
			for _, e := range p.IPBlock.Except {
				if ex, err := netip.ParsePrefix(e); err == nil && ex.Contains(ep.Addr) {
					excluded = true
				}
			}
			if !excluded {
				return true
			}
			continue
		}
		if ep.Pod == nil {
			continue
		}
		if p.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
			nsObj := c.Namespaces[ep.Pod.Namespace]
			if err != nil || nsObj == nil || !sel.Matches(labels.Set(nsObj.Labels)) {
				continue
			}
		} else if ep.Pod.Namespace != ns {
			continue
		}
		if p.PodSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
			if err != nil || !sel.Matches(labels.Set(ep.Pod.Labels)) {
				continue
			}
		}
		return true
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, target Endpoint, proto corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == 0 { // a number
			end := p.Port.IntVal
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if port >= p.Port.IntVal && port <= end {
				return true
			}
			continue
		}
		if target.Pod == nil {
			continue
		}
		for _, ct := range target.Pod.Spec.Containers {
			for _, cp := range ct.Ports {
				cproto := cp.Protocol
				if cproto == "" {
					cproto = corev1.ProtocolTCP
				}
				if cp.Name == p.Port.StrVal && cproto == proto && cp.ContainerPort == port {
					return true
				}
			}
		}
	}
	return false
}
