package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/cilium/ebpf"
)

// Which program a fuzz input goes through.
const (
	fuzzPod = iota
	fuzzUnderlayTC
	fuzzUnderlayXDP
	fuzzPrograms

	minFuzzFrame = 14 + 40 // Ethernet + an IPv6 header
)

// fuzzSeeds are well-formed frames for each program, the starting points
// of FuzzPacketPrograms (the committed corpus under testdata/fuzz holds
// the same and more).
func fuzzSeeds() []struct {
	prog  byte
	frame []byte
} {
	local, _ := podFrame(pod2Addr, 40000, 64, []byte("local"))
	udpEncap, _ := podFrame(farAddr, 40000, 64, []byte("over udp"))
	mplsEncap, _ := podFrame(mplsAddr, 40000, 64, []byte("over mpls"))
	arp := eth(mustMAC("ff:ff:ff:ff:ff:ff"), pod1PeerMAC, 0x0806, make([]byte, 28))
	inner := remoteInner(pod2Addr, 63)
	return []struct {
		prog  byte
		frame []byte
	}{
		{fuzzPod, local}, {fuzzPod, udpEncap}, {fuzzPod, mplsEncap}, {fuzzPod, arp},
		{fuzzUnderlayTC, underlayFrame(remote2, 6635, lse(1000, true, 63), inner)},
		{fuzzUnderlayTC, underlayFrame(remote2, 6635, lse(1001, true, 63), inner)},
		{fuzzUnderlayTC, underlayFrame(remote2, 6635, lse(2000, true, 63), inner)},
		{fuzzUnderlayTC, underlayFrame(remote3, 6635, lse(1000, true, 63), inner)},
		{fuzzUnderlayXDP, eth(underlayMAC, peer3MAC, 0x8847, cat(lse(16001, false, 63), lse(1000, true, 63), inner))},
		{fuzzUnderlayXDP, eth(underlayMAC, peer3MAC, 0x8847, cat(lse(1001, true, 63), inner))},
		{fuzzUnderlayXDP, eth(underlayMAC, peer2MAC, 0x8847, cat(lse(2000, true, 63), inner))},
	}
}

// FuzzPacketPrograms runs random frames through the pod program, the
// underlay tc program and the underlay XDP program of a forwarder with
// two VRFs (red: pod1, pod2, endpoints 192.0.2.2 and 192.0.2.3; blue:
// pod3, no endpoint) and checks the invariants of every packet:
//
//   - the return code is one the program may give (pass on, drop,
//     redirect);
//   - a dropped frame adds exactly one to the drop counters, a frame that
//     is not dropped adds none;
//   - a frame passed on untouched is byte-identical;
//   - a frame delivered to a pod goes to a pod of the VRF it was addressed
//     to: the sending pod's for pod traffic, the label's for tunnel
//     traffic, and only from an endpoint that VRF has routes through
//     (nothing may reach blue from the underlay).
//
// It needs root (BPF). Run it longer with
// go test -run '^$' -fuzz '^FuzzPacketPrograms$' -fuzztime 1h ./dataplane.
func FuzzPacketPrograms(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.prog, s.frame)
	}
	e, pod3 := blueEnv(f)
	pod3Peer := mustMAC("0a:00:00:00:03:02")
	progs := [fuzzPrograms]*ebpf.Program{e.d.progs.PodIngress, e.d.progs.UnderlayIngress, e.d.progs.UnderlayXdp}
	drops := func(t *testing.T) uint64 {
		var n uint64
		for _, vrf := range []string{"", "red", "blue"} {
			d, err := e.d.Drops(vrf)
			if err != nil {
				t.Fatal(err)
			}
			n += d.Total()
		}
		return n
	}
	// labelVRF is where the local labels lead.
	labelVRF := map[uint32]string{1000: "red", 1001: "red", 2000: "blue"}
	f.Fuzz(func(t *testing.T, prog byte, frame []byte) {
		which := int(prog) % fuzzPrograms
		// The kernel's test harness refuses frames too short for the
		// network header their ethertype names; the programs see such
		// frames only from the harness, so they are padded here.
		if len(frame) < minFuzzFrame {
			frame = append(frame, make([]byte, minFuzzFrame-len(frame))...)
		}
		if len(frame) > 1514 {
			frame = frame[:1514]
		}
		before := drops(t)
		opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
		ret, err := progs[which].Run(opts)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		out := opts.DataOut
		dropped := drops(t) - before
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("program %d, frame %x: "+format, append([]any{which, frame}, args...)...)
		}
		isDrop := (which == fuzzUnderlayXDP && ret == xdpDrop) || (which != fuzzUnderlayXDP && ret == tcShot)
		switch {
		case isDrop && dropped != 1:
			fail("dropped, drop counters +%d", dropped)
		case !isDrop && dropped != 0:
			fail("return %d, drop counters +%d", ret, dropped)
		}
		switch which {
		case fuzzPod:
			switch ret {
			case tcShot:
			case tcUnspec:
				if binary.BigEndian.Uint16(frame[12:]) != 0x0806 || !bytes.Equal(out, frame) {
					fail("passed on a frame that is no untouched ARP")
				}
			case tcRedirect:
				// pod1 is in red: to pod2, or out to an endpoint with a
				// label of one of red's remote routes.
				dst := net.HardwareAddr(out[:6])
				switch {
				case bytes.Equal(dst, pod2PeerMAC):
				case bytes.Equal(dst, peer2MAC) || bytes.Equal(dst, peer3MAC):
					if l := encapLabel(out); l != 100 && l != 200 && l != 300 {
						fail("encapsulated with label %d", l)
					}
				default:
					fail("redirected to %v", dst)
				}
			default:
				fail("return %d", ret)
			}
		case fuzzUnderlayTC:
			switch ret {
			case tcShot:
			case tcUnspec:
				if !bytes.Equal(out, frame) {
					fail("passed on a changed frame %x", out)
				}
			case tcRedirect:
				// Only red's pods, by a red label, from red's endpoints.
				label := binary.BigEndian.Uint32(frame[42:]) >> 12
				src := [4]byte(frame[26:30])
				if !bytes.Equal(out[:6], pod2PeerMAC) || labelVRF[label] != "red" ||
					(src != remote2.As4() && src != remote3.As4()) {
					fail("delivered to %v by label %d from %v", net.HardwareAddr(out[:6]), label, net.IP(src[:]))
				}
			default:
				fail("return %d", ret)
			}
		case fuzzUnderlayXDP:
			switch ret {
			case xdpDrop:
			case xdpPass:
				if bytes.Equal(out, frame) {
					break
				}
				if binary.NativeEndian.Uint32(out) == metaFlowMagic {
					// Handed to tc for the flow table (service_mpls.h):
					// popped, the label and the sender in the metadata.
					label, src := binary.NativeEndian.Uint32(out[4:]), net.HardwareAddr(frame[6:12])
					if labelVRF[label] != "red" || (!bytes.Equal(src, peer2MAC) && !bytes.Equal(src, peer3MAC)) {
						fail("handed to tc by label %d from %v", label, src)
					}
					break
				}
				// Decapsulated: metadata with the target, then the frame.
				ifindex := binary.NativeEndian.Uint32(out[4:])
				label := binary.BigEndian.Uint32(frame[14:]) >> 12
				if binary.BigEndian.Uint32(frame[14:])&0x100 == 0 {
					label = binary.BigEndian.Uint32(frame[18:]) >> 12
				}
				src := net.HardwareAddr(frame[6:12])
				if int(ifindex) == pod3 || int(ifindex) != e.pod2 || labelVRF[label] != "red" ||
					(!bytes.Equal(src, peer2MAC) && !bytes.Equal(src, peer3MAC)) || bytes.Equal(out[8:14], pod3Peer) {
					fail("delivered to ifindex %d by label %d from %v", ifindex, label, src)
				}
			default:
				fail("return %d", ret)
			}
		}
	})
}

// encapLabel returns the VPN (bottom) label of an encapsulated frame, 0 if
// it has none.
func encapLabel(f []byte) uint32 {
	off := 14
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		off = 14 + 20 + 8
	case 0x8847:
	default:
		return 0
	}
	for ; off+4 <= len(f); off += 4 {
		if v := binary.BigEndian.Uint32(f[off:]); v&0x100 != 0 {
			return v >> 12
		}
	}
	return 0
}
