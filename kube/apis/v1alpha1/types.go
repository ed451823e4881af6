package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Group, Version and the names of the resource.
const (
	Group    = "isthmus.dev"
	Version  = "v1alpha1"
	Kind     = "VirtualNetwork"
	ListKind = "VirtualNetworkList"
	Resource = "virtualnetworks"
	Singular = "virtualnetwork"
	// ShortName is what kubectl accepts for the resource (kubectl get vn).
	ShortName = "vn"
)

// Labels and annotations the controller reads and writes.
const (
	// NetworkLabel on a Namespace names the VirtualNetwork its pods join.
	NetworkLabel = "isthmus.dev/network"
	// IsolatedNamespaceLabel marks a VirtualNetwork the controller made for
	// one namespace in namespace-isolation mode; its value is the namespace.
	IsolatedNamespaceLabel = "isthmus.dev/isolated-namespace"
	// GNMIAddressAnnotation on a Node overrides host:port of its isthmusd
	// gNMI service (default: the Node's InternalIP and the controller's
	// --gnmi-port).
	GNMIAddressAnnotation = "isthmus.dev/gnmi-address"
)

// Encapsulation is how tenant packets travel between nodes.
type Encapsulation string

// The encapsulations isthmusd forwards.
const (
	MPLSOverUDP  Encapsulation = "MPLSoUDP"
	MPLSOverMPLS Encapsulation = "MPLSoMPLS"
)

// Condition types and reasons written to VirtualNetwork status.
const (
	// ConditionAccepted is False when the network conflicts with another
	// one (route distinguisher number, overlapping subnets between networks
	// that import each other's routes) or its subnets have no room for
	// another node; no node gets any of it then.
	ConditionAccepted = "Accepted"
	// ConditionReady is True when every node runs the network's VRF.
	ConditionReady = "Ready"

	ReasonValid          = "Valid"
	ReasonRDConflict     = "RouteDistinguisherConflict"
	ReasonSubnetOverlap  = "SubnetOverlap"
	ReasonPoolExhausted  = "PoolExhausted"
	ReasonAllNodesReady  = "AllNodesReady"
	ReasonNodesPending   = "NodesPending"
	ReasonNotAccepted    = "NotAccepted"
	ReasonInUseDeleting  = "InUse"
	ReasonNoNodes        = "NoNodes"
	ReasonTemplateAbsent = "TemplateAbsent"
)

// VirtualNetwork is a tenant network: on every node it is one VRF with a
// per-node route distinguisher, the network's route targets, and a block of
// pod addresses carved from the network's subnets.
type VirtualNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the network the user asks for.
	Spec VirtualNetworkSpec `json:"spec"`
	// Status is what the controller made of it.
	Status VirtualNetworkStatus `json:"status,omitempty"`
}

// VirtualNetworkSpec is the intended network.
type VirtualNetworkSpec struct {
	// RouteDistinguisher says how each node's RD for this network is made.
	RouteDistinguisher RouteDistinguisher `json:"routeDistinguisher"`
	// ImportRouteTargets: VPNv4 routes carrying any of them are imported
	// into the network's VRFs ("ASN:number").
	ImportRouteTargets []string `json:"importRouteTargets,omitempty"`
	// ExportRouteTargets are attached to the routes the network's pods
	// export ("ASN:number").
	ExportRouteTargets []string `json:"exportRouteTargets,omitempty"`
	// Subnets are the network's IPv4 pod prefixes. Each node gets blocks
	// of BlockSize carved from them.
	Subnets []string `json:"subnets"`
	// BlockSize is the prefix length of a node's block (default 26).
	BlockSize int32 `json:"blockSize,omitempty"`
	// Encapsulation advertised for the network's routes (default MPLSoUDP).
	Encapsulation Encapsulation `json:"encapsulation,omitempty"`
	// ExternalAccess joins the network to a data-center gateway or another
	// Isthmus domain through the route reflector.
	ExternalAccess *ExternalAccess `json:"externalAccess,omitempty"`
}

// RouteDistinguisher is the RD scheme: node address and a per-network number.
type RouteDistinguisher struct {
	// Number is the network's part of every RD: node N gets
	// "<N's InternalIP>:<Number>" (RFC 4364 type 1). Unique per network.
	Number int32 `json:"number"`
}

// ExternalAccess are the route targets shared with a gateway outside the
// cluster; they are imported and exported on top of the network's own.
type ExternalAccess struct {
	// RouteTargets the gateway exports and imports for this network.
	RouteTargets []string `json:"routeTargets"`
}

// VirtualNetworkStatus is written by the leading controller.
type VirtualNetworkStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted and Ready.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Blocks are the per-node address blocks, kept here so that a node
	// keeps its block across controller restarts and failovers.
	Blocks []NodeBlock `json:"blocks,omitempty"`
	// Namespaces whose pods join this network.
	Namespaces []string `json:"namespaces,omitempty"`
	// ReadyNodes is how many nodes run the network's VRF as intended.
	ReadyNodes int32 `json:"readyNodes"`
	// Nodes is how many nodes should.
	Nodes int32 `json:"nodes"`
}

// NodeBlock is one node's block of pod addresses.
type NodeBlock struct {
	// Node is the Node's name.
	Node string `json:"node"`
	// Prefix is the block ("10.1.0.64/26").
	Prefix string `json:"prefix"`
}

// VirtualNetworkList is a list of VirtualNetworks.
type VirtualNetworkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the networks.
	Items []VirtualNetwork `json:"items"`
}
