package bgp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// rt is a route target in its 8-byte wire form (RFC 4360), used as a map
// key so that matching a received path against import lists allocates
// nothing.
type rt uint64

// Forms of RDs and RTs (RFC 4364 section 4.2, RFC 4360, RFC 5668).
const (
	formAS2  = 0 // 2-byte AS : 4-byte number
	formIPv4 = 1 // IPv4 address : 2-byte number
	formAS4  = 2 // 4-byte AS : 2-byte number
)

// parseAdmin parses "ASN:N", "A.B.C.D:N", "ASN4:N" or "X.Y:N" (asdot)
// into its form and its 6 value bytes. GoBGP's own parser truncates a
// 4-byte AS written asplain, so Isthmus parses these itself.
func parseAdmin(s string) (form byte, value uint64, err error) {
	admin, assigned, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(assigned, ":") {
		return 0, 0, fmt.Errorf("%q is not ADMIN:NUMBER", s)
	}
	n, err := strconv.ParseUint(assigned, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: assigned number: %w", s, err)
	}
	if a, err := netip.ParseAddr(admin); err == nil {
		if !a.Is4() || n > 0xffff {
			return 0, 0, fmt.Errorf("%q: want an IPv4 address and a number up to 65535", s)
		}
		b := a.As4()
		return formIPv4, uint64(binary.BigEndian.Uint32(b[:]))<<16 | n, nil
	}
	var as uint64
	if hi, lo, dot := strings.Cut(admin, "."); dot {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%q: bad AS %q", s, admin)
		}
		as = h<<16 | l
		if n > 0xffff {
			return 0, 0, fmt.Errorf("%q: the number after a 4-byte AS is at most 65535", s)
		}
		return formAS4, as<<16 | n, nil
	}
	if as, err = strconv.ParseUint(admin, 10, 32); err != nil {
		return 0, 0, fmt.Errorf("%q: bad AS %q", s, admin)
	}
	if as <= 0xffff {
		return formAS2, as<<32 | n, nil
	}
	if n > 0xffff {
		return 0, 0, fmt.Errorf("%q: the number after a 4-byte AS is at most 65535", s)
	}
	return formAS4, as<<16 | n, nil
}

// parseRT parses a route target in any of the forms of parseAdmin.
func parseRT(s string) (rt, error) {
	form, v, err := parseAdmin(s)
	if err != nil {
		return 0, fmt.Errorf("parse route target: %w", err)
	}
	// Transitive type (0x00, 0x01, 0x02 by form), sub-type route target.
	return rt(uint64(form)<<56 | uint64(bgp.EC_SUBTYPE_ROUTE_TARGET)<<48 | v), nil
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

// parseRD parses a route distinguisher in any of the forms of parseAdmin.
func parseRD(s string) (rd, error) {
	form, v, err := parseAdmin(s)
	if err != nil {
		return 0, fmt.Errorf("parse route distinguisher: %w", err)
	}
	return rd(uint64(form)<<48 | v), nil
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
