package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/isthmus-net/isthmus/nos"
)

// DefaultBPFFS is where the forwarder pins its state when Config.BPFFS is
// empty.
const DefaultBPFFS = "/sys/fs/bpf/isthmus"

// DefaultUDPPort is the IANA port of MPLS in UDP (RFC 7510).
const DefaultUDPPort = 6635

// Overheads of the two encapsulations, in bytes added to the inner IPv4
// packet. A pod interface's MTU must leave this much room below the
// underlay MTU: the forwarder drops (and counts) a packet that does not fit;
// it does not send ICMP fragmentation-needed.
const (
	OverheadMPLSoUDP  = 20 + 8 + 4
	OverheadMPLSoMPLS = 8
)

// MaxNextHops is the largest ECMP set of a route.
const MaxNextHops = 16

// Errors returned by the API; check them with errors.Is.
var (
	ErrTooManyNextHops = errors.New("too many next hops")
	ErrUnknownVRF      = errors.New("unknown vrf")
	ErrNotIPv4         = errors.New("not an ipv4 address")
	ErrNotAttached     = errors.New("interface not attached")
	ErrUnknownEndpoint = errors.New("unknown endpoint")
)

// Config configures a Dataplane.
type Config struct {
	// BPFFS is the directory (on a bpffs mount) where maps, programs and
	// links are pinned. Empty means DefaultBPFFS.
	BPFFS string
	// Logger receives the dataplane's logs. Nil means slog.Default().
	Logger *slog.Logger
	// HostRoutes sizes the preallocated exact-match table of /32 routes
	// (about 64 bytes each); /32s beyond it go to the LPM trie. 0 means
	// 262144. Changing it requires destroying the pinned state.
	HostRoutes int
	// FlowEntries sizes the flow table (two entries per flow, least
	// recently used evicted when full). 0 means 262144. Changing it
	// requires destroying the pinned state.
	FlowEntries int
}

// Encap is how a next hop is reached: the core's type, so FIB entries pass
// through without conversion.
type Encap = nos.Encap

const (
	// EncapMPLSoUDP is RFC 7510: outer IPv4 + UDP + the VPN label.
	EncapMPLSoUDP = nos.EncapMPLSoUDP
	// EncapMPLSoMPLS is Ethernet to the next hop + transport label + VPN label.
	EncapMPLSoMPLS = nos.EncapMPLSoMPLS
)

// NextHop is one remote path of a route: the remote host's underlay
// address, the VPN label it allocated (20 bits) and the encapsulation.
type NextHop = nos.NextHop

// RouteKey identifies a route: a prefix in a VRF.
type RouteKey = nos.RouteKey

// Route is a forwarding entry. Exactly one of Interface (a local pod
// interface, by ifindex) and NextHops (an ECMP set of remote paths) is set.
type Route struct {
	RouteKey
	// Interface is the host-side ifindex of a local pod's veth.
	Interface int
	// NextHops are the remote paths, at most MaxNextHops.
	NextHops []NextHop
}

// Interface is a pod attachment: the host end of a pod veth bound to a VRF.
type Interface struct {
	// Index is the host-side ifindex.
	Index int
	// VRF is the network instance the pod belongs to.
	VRF string
	// PeerMAC is the MAC of the pod end of the veth, the destination of
	// frames delivered to the pod.
	PeerMAC net.HardwareAddr
}

// Tunnel is the host's tunnel configuration.
type Tunnel struct {
	// Source is the local underlay address, the outer source of MPLSoUDP.
	Source netip.Addr
	// UDPPort is the MPLSoUDP destination port; 0 means DefaultUDPPort.
	UDPPort uint16
	// Underlay is the name of the underlay interface.
	Underlay string
	// MTU is the largest outer IP packet; 0 means the underlay's MTU.
	MTU int
	// TransportLabel is the MPLSoMPLS transport label this host accepts on
	// top of its VPN labels; 0 accepts any from a known endpoint.
	TransportLabel uint32
	// MPLSoMPLS attaches the XDP decapsulator for MPLSoMPLS on the underlay.
	// It costs the underlay's peer TSO on veth, so it is off unless needed.
	MPLSoMPLS bool
}

// Endpoint is a remote tunnel endpoint.
type Endpoint struct {
	// Addr is the remote host's underlay address.
	Addr netip.Addr
	// MAC is the next hop's MAC toward Addr. Nil means resolve it from the
	// kernel's neighbor table (see Dataplane.ResolveNeighbors).
	MAC net.HardwareAddr
	// TransportLabel is pushed under the VPN label for MPLSoMPLS; 0 means none.
	TransportLabel uint32
}

// LabelTarget is what a local VPN label decapsulates to.
type LabelTarget struct {
	// VRF the label belongs to.
	VRF string
	// Interface, when non-zero, delivers straight to this pod interface
	// (per-prefix labels); zero means look the inner destination up in VRF.
	Interface int
}

// InterfaceCounters are the packets and bytes of a pod interface, summed
// over CPUs. Rx is from the pod, Tx is to the pod. RxDrops are packets from
// the pod that were dropped, whatever the reason (the forwarder's, which
// also count by reason in the VRF, and the pod's egress policy); TxDrops
// packets for the pod dropped once the pod was known (TTL, delivery
// errors, the pod's ingress policy).
type InterfaceCounters struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
	RxDrops, TxDrops                       uint64
}

// EndpointCounters are the packets and bytes exchanged with a remote
// endpoint. Tx counts inner bytes before encapsulation, Rx outer bytes.
type EndpointCounters struct {
	TxPackets, TxBytes, RxPackets, RxBytes uint64
}

// DropCounters are a VRF's drops by reason.
type DropCounters struct {
	NoRoute         uint64
	TTL             uint64
	UnknownLabel    uint64
	UnknownEndpoint uint64
	Malformed       uint64
	MTU             uint64
	NoNeighbor      uint64
	Error           uint64
}

// Total is the sum of all drop reasons.
func (d DropCounters) Total() uint64 {
	return d.NoRoute + d.TTL + d.UnknownLabel + d.UnknownEndpoint + d.Malformed + d.MTU + d.NoNeighbor + d.Error
}

func ipv4(a netip.Addr) ([4]byte, error) {
	if !a.Is4() {
		return [4]byte{}, fmt.Errorf("%v: %w", a, ErrNotIPv4)
	}
	return a.As4(), nil
}
