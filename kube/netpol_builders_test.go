package kube

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// Short names for the truth table's policy builders, as the policy tests
// write them.
var (
	np          = netpoltest.Policy
	sel         = netpoltest.Match
	selp        = netpoltest.MatchRef
	expr        = netpoltest.Expr
	port        = netpoltest.Port
	portRange   = netpoltest.PortRange
	portName    = netpoltest.NamedPort
	anyPort     = netpoltest.AnyPort
	ingressOnly = netpoltest.IngressOnly
	egressOnly  = netpoltest.EgressOnly
	bothTypes   = netpoltest.BothTypes
	tcp, udp    = corev1.ProtocolTCP, corev1.ProtocolUDP
	sctp        = corev1.ProtocolSCTP
)

type (
	inRule  = networkingv1.NetworkPolicyIngressRule
	egRule  = networkingv1.NetworkPolicyEgressRule
	peer    = networkingv1.NetworkPolicyPeer
	npPorts = []networkingv1.NetworkPolicyPort
)
