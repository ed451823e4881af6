package testbed

import (
	"encoding/binary"
	"testing"
)

func TestParsePcap(t *testing.T) {
	le := binary.LittleEndian
	file := make([]byte, 24)
	le.PutUint32(file, 0xa1b2c3d4)
	le.PutUint32(file[20:], 1) // Ethernet
	record := func(frame []byte) {
		h := make([]byte, 16)
		le.PutUint32(h[8:], uint32(len(frame)))
		le.PutUint32(h[12:], uint32(len(frame)))
		file = append(append(file, h...), frame...)
	}
	udp := make([]byte, 14+20+8)
	binary.BigEndian.PutUint16(udp[12:], 0x0800)
	udp[14] = 0x45
	udp[14+9] = 17
	copy(udp[14+12:], []byte{10, 10, 0, 11, 10, 20, 0, 11})
	binary.BigEndian.PutUint16(udp[34:], 4242)
	binary.BigEndian.PutUint16(udp[36:], 6635)
	record(udp)
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	record(arp)

	pkts, skipped, err := ParsePcap(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 || skipped != 0 || pkts[1].EtherType != 0x0806 {
		t.Fatalf("got %v and %d skipped, want a UDP packet and an ARP frame", pkts, skipped)
	}
	if got, want := pkts[0].String(), "UDP 10.10.0.11:4242 > 10.20.0.11:6635"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, _, err := ParsePcap(file[:30]); err == nil {
		t.Error("truncated file: want error")
	}
}
