package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Frame builders for the packet tests. Checksums are computed the way a
// sender would; the programs under test must keep them valid.

func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

type ip4 struct {
	src, dst netip.Addr
	proto    uint8
	ttl      uint8
	tos      uint8
	id       uint16
	flags    uint16 // frag_off field
}

func (h ip4) packet(payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	b[1] = h.tos
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], h.id)
	binary.BigEndian.PutUint16(b[6:], h.flags)
	b[8] = h.ttl
	b[9] = h.proto
	s, d := h.src.As4(), h.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], csum(b[:20]))
	return append(b, payload...)
}

func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

func eth(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:], dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], typ)
	return append(b, payload...)
}

func lse(label uint32, bos bool, ttl uint8) []byte {
	v := label<<12 | uint32(ttl)
	if bos {
		v |= 0x100
	}
	return binary.BigEndian.AppendUint32(nil, v)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// withTTL returns a copy of an IPv4 packet with another TTL and a fixed
// checksum.
func withTTL(pkt []byte, ttl uint8) []byte {
	b := append([]byte(nil), pkt...)
	b[8] = ttl
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], csum(b[:20]))
	return b
}

// flowHash mirrors flow_hash in bpf/forwarder.c for UDP and TCP packets.
func flowHash(pkt []byte) uint32 {
	mix := func(h uint32) uint32 {
		h ^= h >> 16
		h *= 0x85ebca6b
		h ^= h >> 13
		h *= 0xc2b2ae35
		h ^= h >> 16
		return h
	}
	ne := binary.NativeEndian
	h := mix(ne.Uint32(pkt[12:]) ^ 0x9e3779b9)
	h = mix(h ^ ne.Uint32(pkt[16:]))
	h = mix(h ^ ne.Uint32(pkt[20:]))
	return mix(h ^ uint32(pkt[9]))
}
