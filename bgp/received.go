package bgp

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/nos"
)

// reject is why a received path was not imported.
type reject uint8

const (
	rejectNone reject = iota
	// rejectNoRT: the path carries no route target.
	rejectNoRT
	// rejectLabel: no label, or a reserved one (0-15).
	rejectLabel
	// rejectNexthop: the next hop is missing, not IPv4, or not a usable
	// unicast address.
	rejectNexthop
	// rejectEncap: the path names only tunnel types Isthmus cannot send.
	rejectEncap
	// rejectFamily: not a VPNv4 path.
	rejectFamily
	numRejects
)

func (r reject) String() string {
	switch r {
	case rejectNoRT:
		return "no-route-target"
	case rejectLabel:
		return "bad-label"
	case rejectNexthop:
		return "bad-next-hop"
	case rejectEncap:
		return "unsupported-encapsulation"
	case rejectFamily:
		return "unsupported-family"
	}
	return "none"
}

// v4 is an IPv4 address as a number; a compact map key.
type v4 uint32

func v4of(a netip.Addr) v4 {
	b := a.As4()
	return v4(binary.BigEndian.Uint32(b[:]))
}

func (a v4) addr() netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(a))
	return netip.AddrFrom4(b)
}

// prefixKey is a received IPv4 prefix (without its RD) as one number, the
// address above the length: a map key that hashes as a single word.
type prefixKey uint64

func prefixKeyOf(p netip.Prefix) prefixKey {
	return prefixKey(uint64(v4of(p.Addr()))<<8 | uint64(p.Bits()))
}

func (k prefixKey) prefix() netip.Prefix { return netip.PrefixFrom(v4(k>>8).addr(), int(k&0xff)) }

// pathID tells apart the paths to one prefix: the RD, the peer that sent
// the path and its ADD-PATH identifier.
type pathID struct {
	rd   rd
	peer uint32 // index into rib.peers
	id   uint32
}

// learned is what import keeps of a received path.
type learned struct {
	endpoint  v4
	label     uint32
	localPref uint32
	rtset     uint32 // index into importer.rtsets
	asLen     uint8
	encap     nos.Encap // 0: none advertised, the VRF's own applies
}

// received is a received path with its attributes read out.
type received struct {
	rd        rd
	prefix    netip.Prefix
	peer      netip.Addr
	id        uint32
	withdraw  bool
	endpoint  netip.Addr
	label     uint32
	localPref uint32
	asLen     int
	rts       []rt // sorted, unique
	encap     nos.Encap
}

// defaultLocalPref is what a path without LOCAL_PREF (eBGP) counts as.
const defaultLocalPref = 100

// readPath reads a GoBGP path and checks it. A withdrawal needs only its
// identity. The check is pure: the importer decides what to do with the
// reason (count it, ignore the path).
func readPath(p *apiutil.Path, rtbuf []rt) (received, reject) {
	r := received{peer: p.PeerAddress, id: p.RemoteID, withdraw: p.Withdrawal, localPref: defaultLocalPref}
	nlri, ok := p.Nlri.(*bgp.LabeledVPNIPAddrPrefix)
	if p.Family != bgp.RF_IPv4_VPN || !ok || !nlri.Prefix.Addr().Is4() {
		return r, rejectFamily
	}
	r.rd = rdOf(nlri.RD)
	r.prefix = nlri.Prefix.Masked()
	if r.withdraw {
		return r, rejectNone
	}
	if len(nlri.Labels.Labels) > 0 {
		r.label = nlri.Labels.Labels[0]
	}
	var tunnels, usable int
	r.rts = rtbuf[:0]
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			r.endpoint = a.Nexthop
		case *bgp.PathAttributeNextHop:
			if !r.endpoint.IsValid() {
				r.endpoint = a.Value
			}
		case *bgp.PathAttributeLocalPref:
			r.localPref = a.Value
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				r.asLen += seg.ASLen()
			}
		case *bgp.PathAttributeExtendedCommunities:
			for _, ec := range a.Value {
				if t, ok := rtOf(ec); ok {
					r.rts = append(r.rts, t)
					continue
				}
				if e, ok := ec.(*bgp.EncapExtended); ok {
					tunnels++
					switch e.TunnelType {
					case bgp.TUNNEL_TYPE_MPLS_IN_UDP:
						usable++
						r.encap = nos.EncapMPLSoUDP
					case bgp.TUNNEL_TYPE_MPLS:
						usable++
						if r.encap == 0 {
							r.encap = nos.EncapMPLSoMPLS
						}
					}
				}
			}
		}
	}
	slices.Sort(r.rts)
	r.rts = slices.Compact(r.rts)
	switch {
	case len(r.rts) == 0:
		return r, rejectNoRT
	case r.label < 16 || r.label > 1<<20-1:
		return r, rejectLabel
	case !usableEndpoint(r.endpoint):
		return r, rejectNexthop
	case tunnels > 0 && usable == 0:
		return r, rejectEncap
	}
	return r, rejectNone
}

// usableEndpoint reports whether a next hop can be a tunnel endpoint.
func usableEndpoint(a netip.Addr) bool {
	return a.IsValid() && a.Is4() && !a.IsUnspecified() && !a.IsLoopback() &&
		!a.IsMulticast() && !a.IsLinkLocalUnicast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
