package bgp

import (
	"net/netip"

	"github.com/isthmus-net/isthmus/nos"
)

// intent is everything the speaker needs from one committed configuration,
// flattened out of the tree. It is built by pure functions (config.go) and
// compared by value, so a commit that changes one neighbor touches only
// that neighbor.
type intent struct {
	global    globalSpec
	neighbors map[netip.Addr]neighborSpec
	vrfs      map[string]vrfSpec
	// endpoint is this host's tunnel source address: the next hop of every
	// exported path and the endpoint whose routes import ignores.
	endpoint netip.Addr
	// bgpPath is the schema path of the BGP container, for state.
	bgpPath string
}

// enabled reports whether the speaker should run at all.
func (in *intent) enabled() bool {
	return in != nil && in.global.as != 0 && in.global.routerID.IsValid()
}

// transit reports whether this speaker passes routes learnt from one peer on
// to others. Only a speaker with route-reflector clients does; any other
// host announces only its own routes.
func (in *intent) transit() bool {
	for _, n := range in.neighbors {
		if n.rrClient {
			return true
		}
	}
	return false
}

// globalSpec is the speaker-wide configuration.
type globalSpec struct {
	as       uint32
	routerID netip.Addr
	// listenPort is the TCP port to accept sessions on; -1 accepts none.
	listenPort int32
	// listenAddresses restricts the listeners; empty means all addresses.
	listenAddresses []string
}

// grSpec is graceful restart (RFC 4724) for one neighbor.
type grSpec struct {
	enabled bool
	// restartTime is how long peers keep our routes while we restart.
	restartTime uint16
	// staleRoutesTime is how long we keep a restarting peer's routes.
	staleRoutesTime uint16
}

// timerSpec are a session's timers in seconds.
type timerSpec struct {
	connectRetry     uint16
	holdTime         uint16
	keepalive        uint16
	minAdvertisement uint16
}

// neighborSpec is one peer with every modelled leaf resolved (global
// defaults applied), so two equal specs mean an untouched session.
type neighborSpec struct {
	address      netip.Addr
	peerAS       uint32
	description  string
	enabled      bool
	authPassword string
	localAddress netip.Addr
	passive      bool
	// remotePort is the peer's TCP port, 0 for the standard 179. Not
	// modelled: tests and the benchmark driver use it.
	remotePort uint16
	timers     timerSpec
	gr         grSpec
	rrClient   bool
	clusterID  netip.Addr
	multihop   bool
	// multihopTTL is the TTL of a multihop eBGP session.
	multihopTTL uint8
	// families are the enabled address families.
	families family
}

// family is a set of address families Isthmus negotiates.
type family uint8

const (
	familyVPNv4 family = 1 << iota
	familyIPv4
)

func (f family) String() string {
	switch f {
	case familyVPNv4:
		return "L3VPN_IPV4_UNICAST"
	case familyIPv4:
		return "IPV4_UNICAST"
	}
	return "UNKNOWN"
}

// labelMode is how a VRF's VPN labels are allocated.
type labelMode uint8

const (
	labelPerVRF labelMode = iota
	labelPerPrefix
)

// vrfSpec is one tenant VRF as BGP sees it.
type vrfSpec struct {
	name      string
	rd        rd
	importRTs []rt // sorted, unique
	exportRTs []rt // sorted, unique
	labelMode labelMode
	encap     nos.Encap
	// routes are the local prefixes the VRF exports: pod /32s and static
	// routes, sorted.
	routes []netip.Prefix
	// services are the service address /32s this host advertises with
	// the VRF label (services.go), sorted.
	services []netip.Prefix
	// floating are the floating IPs of pods of this host in the VRF,
	// advertised as IPv4 unicast or VPNv4 (floating.go).
	floating []netip.Prefix
	// floatingExt is the external VRF the floating IPs are advertised in
	// as VPNv4 routes, "" for IPv4 unicast (floating.go).
	floatingExt string
}
