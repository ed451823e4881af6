package api

import (
	"net/netip"
)

// AttachmentID names one pod attachment: the container and the interface
// name inside it, as CNI_CONTAINERID and CNI_IFNAME give them.
type AttachmentID struct {
	// ContainerID is the runtime's container ID (CNI_CONTAINERID).
	ContainerID string `json:"containerID"`
	// IfName is the interface name inside the pod (CNI_IFNAME).
	IfName string `json:"ifname"`
}

// Pod is the Kubernetes identity of a pod, taken from CNI_ARGS when the
// runtime passes it. Both fields are empty outside Kubernetes.
type Pod struct {
	// Namespace is K8S_POD_NAMESPACE.
	Namespace string `json:"namespace,omitempty"`
	// Name is K8S_POD_NAME.
	Name string `json:"name,omitempty"`
}

// AddRequest asks the daemon to allocate an address for a pod and commit
// its attachment. The plugin has already created the veth pair, so the
// daemon can attach the dataplane to the host end.
type AddRequest struct {
	AttachmentID
	// Network is the network named in the CNI configuration.
	Network string `json:"network"`
	// Netns is the path of the pod's network namespace.
	Netns string `json:"netns"`
	// Pod identifies the Kubernetes pod, if any.
	Pod Pod `json:"pod"`
	// HostIfName is the name of the host end of the veth pair.
	HostIfName string `json:"hostIfName"`
	// HostMAC is the MAC address of the host end (the pod's gateway MAC).
	HostMAC string `json:"hostMAC"`
	// PodMAC is the MAC address of the pod end.
	PodMAC string `json:"podMAC"`
}

// Attachment is what the daemon recorded for one pod interface.
type Attachment struct {
	AttachmentID
	// Network is the network named in the CNI configuration.
	Network string `json:"network"`
	// VRF is the network instance the pod was placed in.
	VRF string `json:"vrf"`
	// Netns is the path of the pod's network namespace.
	Netns string `json:"netns"`
	// Pod identifies the Kubernetes pod, if any.
	Pod Pod `json:"pod"`
	// HostIfName is the host end of the veth pair; it is also the name of
	// the interface in the configuration tree.
	HostIfName string `json:"hostIfName"`
	// HostMAC is the MAC address of the host end.
	HostMAC string `json:"hostMAC"`
	// PodMAC is the MAC address of the pod end.
	PodMAC string `json:"podMAC"`
	// Address is the pod's address, always a /32.
	Address netip.Prefix `json:"address"`
	// Gateway is the link-local next hop the pod routes through.
	Gateway netip.Addr `json:"gateway"`
	// MTU is the pod interface MTU, leaving room for encapsulation.
	MTU int `json:"mtu"`
	// Underlay is the interface the tunnel leaves through. The plugin
	// gives both ends of the pod's veth its IPv4 GSO maximum size when
	// that is above 64 KiB (BIG TCP), so the pod's TCP builds packets the
	// underlay still sends whole.
	Underlay string `json:"underlay,omitempty"`
}

// AddResponse returns the committed attachment.
type AddResponse struct {
	// Attachment is the pod's attachment, as committed.
	Attachment Attachment `json:"attachment"`
	// Revision is the configuration revision that holds it.
	Revision uint64 `json:"revision"`
}

// DelRequest asks the daemon to remove an attachment and release its
// address. Deleting an attachment that does not exist is not an error.
type DelRequest struct {
	AttachmentID
	// Network is the network named in the CNI configuration.
	Network string `json:"network"`
}

// DelResponse says what was removed.
type DelResponse struct {
	// Attachment is the removed attachment; nil if there was none.
	Attachment *Attachment `json:"attachment,omitempty"`
}

// GetRequest asks for one attachment.
type GetRequest struct {
	AttachmentID
	// Network is the network named in the CNI configuration.
	Network string `json:"network"`
}

// GetResponse carries one attachment.
type GetResponse struct {
	// Attachment is the recorded attachment.
	Attachment Attachment `json:"attachment"`
}

// GCRequest asks the daemon to remove every attachment of a network that
// the runtime no longer knows about.
type GCRequest struct {
	// Network is the network named in the CNI configuration.
	Network string `json:"network"`
	// Valid lists the attachments to keep (cni.dev/valid-attachments).
	Valid []AttachmentID `json:"valid"`
}

// GCResponse lists what was removed, so the plugin can delete the host
// ends of their veth pairs.
type GCResponse struct {
	// Removed are the attachments that were not in the valid list.
	Removed []Attachment `json:"removed"`
}

// StatusRequest asks whether the daemon can serve ADDs for a network.
type StatusRequest struct {
	// Network is the network named in the CNI configuration.
	Network string `json:"network"`
}

// StatusResponse reports readiness.
type StatusResponse struct {
	// Ready is true when ADD would be served.
	Ready bool `json:"ready"`
	// Reason says why the daemon is not ready.
	Reason string `json:"reason,omitempty"`
}
