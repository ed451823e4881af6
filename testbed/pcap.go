package testbed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Packet is a captured Ethernet frame: its EtherType and, for IPv4, the
// outer IP header.
type Packet struct {
	// EtherType is 0x0800 for IPv4, 0x8847 for MPLS unicast, 0x0806 for ARP.
	EtherType uint16
	// Src and Dst are the outer addresses.
	Src, Dst netip.Addr
	// Proto is the IP protocol (6 TCP, 17 UDP, 1 ICMP).
	Proto uint8
	// SrcPort and DstPort are set for TCP and UDP.
	SrcPort, DstPort uint16
}

// String renders the packet as "UDP 10.10.0.11:4242 > 10.20.0.11:6635".
func (p Packet) String() string {
	if p.EtherType != 0x0800 {
		return fmt.Sprintf("ethertype 0x%04x", p.EtherType)
	}
	name := map[uint8]string{1: "ICMP", 6: "TCP", 17: "UDP"}[p.Proto]
	if name == "" {
		name = fmt.Sprintf("proto-%d", p.Proto)
	}
	if p.Proto == 6 || p.Proto == 17 {
		return fmt.Sprintf("%s %s:%d > %s:%d", name, p.Src, p.SrcPort, p.Dst, p.DstPort)
	}
	return fmt.Sprintf("%s %s > %s", name, p.Src, p.Dst)
}

// ParsePcap reads a classic pcap file of Ethernet frames (as `tcpdump -w`
// writes) and returns every frame, with the outer header decoded for IPv4;
// frames too short to carry an Ethernet header are counted in skipped.
func ParsePcap(data []byte) (pkts []Packet, skipped int, err error) {
	if len(data) < 24 {
		return nil, 0, errors.New("parse pcap: short file header")
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, 0, errors.New("parse pcap: not a pcap file")
	}
	if link := order.Uint32(data[20:]); link != 1 {
		return nil, 0, fmt.Errorf("parse pcap: link type %d, want Ethernet", link)
	}
	for off := 24; off < len(data); {
		if off+16 > len(data) {
			return pkts, skipped, errors.New("parse pcap: truncated record header")
		}
		n := int(order.Uint32(data[off+8:]))
		off += 16
		if off+n > len(data) {
			return pkts, skipped, errors.New("parse pcap: truncated record")
		}
		p, ok := parseEthernetIPv4(data[off : off+n])
		off += n
		if !ok {
			skipped++
			continue
		}
		pkts = append(pkts, p)
	}
	return pkts, skipped, nil
}

func parseEthernetIPv4(f []byte) (Packet, bool) {
	if len(f) < 14 {
		return Packet{}, false
	}
	p := Packet{EtherType: binary.BigEndian.Uint16(f[12:])}
	if p.EtherType != 0x0800 || len(f) < 14+20 {
		return p, true
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl {
		return p, true
	}
	p = Packet{
		EtherType: p.EtherType,
		Src:       netip.AddrFrom4([4]byte(ip[12:16])),
		Dst:       netip.AddrFrom4([4]byte(ip[16:20])),
		Proto:     ip[9],
	}
	if (p.Proto == 6 || p.Proto == 17) && len(ip) >= ihl+4 {
		p.SrcPort = binary.BigEndian.Uint16(ip[ihl:])
		p.DstPort = binary.BigEndian.Uint16(ip[ihl+2:])
	}
	return p, true
}
