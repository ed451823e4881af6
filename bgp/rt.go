package bgp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// rt is a route target in its 8-byte wire form (RFC 4360), used as a map
// key so that matching a received path against import lists allocates
// nothing.
type rt uint64

// parseRT parses "ASN:N", "A.B.C.D:N" or "ASN4:N".
func parseRT(s string) (rt, error) {
	ec, err := bgp.ParseRouteTarget(s)
	if err != nil {
		return 0, fmt.Errorf("parse route target %q: %w", s, err)
	}
	v, ok := rtOf(ec)
	if !ok {
		return 0, fmt.Errorf("parse route target %q: not a route target", s)
	}
	return v, nil
}

// rtOf returns the wire form of ec when it is a transitive route target.
func rtOf(ec bgp.ExtendedCommunityInterface) (rt, bool) {
	t, st := ec.GetTypes()
	if st != bgp.EC_SUBTYPE_ROUTE_TARGET {
		return 0, false
	}
	switch t {
	case bgp.EC_TYPE_TRANSITIVE_TWO_OCTET_AS_SPECIFIC,
		bgp.EC_TYPE_TRANSITIVE_IP4_SPECIFIC,
		bgp.EC_TYPE_TRANSITIVE_FOUR_OCTET_AS_SPECIFIC:
	default:
		return 0, false
	}
	k, err := bgp.ExtCommRouteTargetKey(ec)
	if err != nil {
		return 0, false
	}
	return rt(k), true
}

// community returns the route target as a GoBGP extended community.
func (r rt) community() bgp.ExtendedCommunityInterface {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(r))
	switch bgp.ExtendedCommunityAttrType(b[0]) {
	case bgp.EC_TYPE_TRANSITIVE_IP4_SPECIFIC:
		ec, _ := bgp.NewIPv4AddressSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET,
			netip.AddrFrom4([4]byte(b[2:6])), binary.BigEndian.Uint16(b[6:]), true)
		return ec
	case bgp.EC_TYPE_TRANSITIVE_FOUR_OCTET_AS_SPECIFIC:
		return bgp.NewFourOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET,
			binary.BigEndian.Uint32(b[2:6]), binary.BigEndian.Uint16(b[6:]), true)
	default:
		return bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET,
			binary.BigEndian.Uint16(b[2:4]), binary.BigEndian.Uint32(b[4:]), true)
	}
}

// String formats the route target as it is configured.
func (r rt) String() string { return r.community().String() }

// rd is a route distinguisher in its 8-byte wire form (RFC 4364).
type rd uint64

// parseRD parses "ASN:N", "A.B.C.D:N" or "ASN4:N".
func parseRD(s string) (rd, error) {
	v, err := bgp.ParseRouteDistinguisher(s)
	if err != nil {
		return 0, fmt.Errorf("parse route distinguisher %q: %w", s, err)
	}
	return rdOf(v), nil
}

// rdOf returns the wire form of a GoBGP route distinguisher.
func rdOf(v bgp.RouteDistinguisherInterface) rd {
	switch x := v.(type) {
	case *bgp.RouteDistinguisherTwoOctetAS:
		return rd(uint64(bgp.BGP_RD_TWO_OCTET_AS)<<48 | uint64(x.Admin)<<32 | uint64(x.Assigned))
	case *bgp.RouteDistinguisherIPAddressAS:
		a := x.Admin.As4()
		return rd(uint64(bgp.BGP_RD_IPV4_ADDRESS)<<48 | uint64(binary.BigEndian.Uint32(a[:]))<<16 | uint64(x.Assigned))
	case *bgp.RouteDistinguisherFourOctetAS:
		return rd(uint64(bgp.BGP_RD_FOUR_OCTET_AS)<<48 | uint64(x.Admin)<<16 | uint64(x.Assigned))
	}
	b, err := v.Serialize()
	if err != nil || len(b) != 8 {
		return 0
	}
	return rd(binary.BigEndian.Uint64(b))
}

// distinguisher returns the route distinguisher as GoBGP's type.
func (r rd) distinguisher() bgp.RouteDistinguisherInterface {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(r))
	return bgp.GetRouteDistinguisher(b[:])
}

// String formats the route distinguisher as it is configured.
func (r rd) String() string { return r.distinguisher().String() }
