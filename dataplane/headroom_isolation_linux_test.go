package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestHeadroomBridgeUpForwardsNothing sets the headroom bridge up, as an
// administrator or a network manager might, and checks that it still
// joins no pods: ARP frames that the red pod sends to the broadcast
// address, to a multicast address and to the blue pod's MAC (pod_ingress
// leaves ARP to the stack, i.e. to the bridge) reach its host end but
// never the blue pod, of another VRF on the same host. It then checks
// that the next attachment takes the bridge down again.
func TestHeadroomBridgeUpForwardsNothing(t *testing.T) {
	o := newOverlay(t, EncapMPLSoUDP)
	red, blue := o.a.pods["red"], o.a.pods["blue"]
	must(t, o.a.ns.do(func() error {
		br, err := netlink.LinkByName(headroomBridge)
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(br)
	}))
	if up := linkFlags(t, o.a, headroomBridge) & net.FlagUp; up == 0 {
		t.Fatalf("%s is not up after setting it up", headroomBridge)
	}

	rx := packetSocket(t, blue, unix.ETH_P_ARP)
	tx := packetSocket(t, red, 0)
	blueTx := packetSocket(t, blue, 0)
	redIf, blueIf := ifindexIn(t, red.ns, "eth0"), ifindexIn(t, blue.ns, "eth0")
	frames := [][]byte{
		arpFrame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, red.mac, 1),
		arpFrame(net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, red.mac, 1),
		arpFrame(blue.mac, red.mac, 2),
	}
	send := func(fd, ifindex int, f []byte) {
		t.Helper()
		to := &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons16(unix.ETH_P_ARP), Halen: 6}
		copy(to.Addr[:], f[:6])
		if err := unix.Sendto(fd, f, 0, to); err != nil {
			t.Fatalf("send frame: %v", err)
		}
	}
	hostRx0 := linkRxPackets(t, o.a, red.hostIf)
	crossed := map[string]int{}
	const rounds = 10
	for range rounds {
		// The blue pod speaks first, so that a learning bridge would
		// know its port and forward the unicast frame to it.
		send(blueTx, blueIf, arpFrame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, blue.mac, 1))
		for _, f := range frames {
			send(tx, redIf, f)
		}
		// Read what reached the blue pod for a while before the next round.
		for deadline := time.Now().Add(30 * time.Millisecond); time.Now().Before(deadline); {
			buf := make([]byte, 256)
			n, _, err := unix.Recvfrom(rx, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				t.Fatalf("receive in the blue pod: %v", err)
			}
			if n >= 14 && bytes.Equal(buf[6:12], red.mac) {
				crossed[net.HardwareAddr(buf[:6]).String()]++
			}
		}
	}
	if len(crossed) > 0 {
		t.Errorf("the blue pod received frames of the red pod through %s (by destination: %v)", headroomBridge, crossed)
	}
	// The frames did reach the bridge port: the host end received them.
	if got := linkRxPackets(t, o.a, red.hostIf) - hostRx0; got < rounds*uint64(len(frames)) {
		t.Fatalf("host end %s received %d frames, want ≥ %d", red.hostIf, got, rounds*len(frames))
	}

	// The next attachment finds the bridge up and takes it down.
	must(t, o.a.ns.do(func() error {
		return o.a.d.AttachInterface(Interface{Index: ifindexIn(t, o.a.ns, red.hostIf), VRF: "red", PeerMAC: red.mac})
	}))
	if up := linkFlags(t, o.a, headroomBridge) & net.FlagUp; up != 0 {
		t.Errorf("%s still up after an attachment", headroomBridge)
	}
}

// packetSocket opens an AF_PACKET socket on the pod's eth0, receiving
// frames of proto (none if 0), with a short receive timeout.
func packetSocket(t *testing.T, p *testPod, proto uint16) int {
	t.Helper()
	fd := -1
	must(t, p.ns.do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons16(proto)))
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons16(proto), Ifindex: l.Attrs().Index}); err != nil {
			unix.Close(s)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		tv := unix.NsecToTimeval((10 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(s)
			return fmt.Errorf("set receive timeout: %w", err)
		}
		fd = s
		return nil
	}))
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// arpFrame is an Ethernet frame to dst from src carrying an ARP request
// (op 1) or reply (op 2) for addresses no pod has, padded to 60 bytes.
func arpFrame(dst, src net.HardwareAddr, op uint16) []byte {
	f := make([]byte, 60)
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], op)
	copy(a[8:], src)
	copy(a[14:], []byte{10, 99, 0, 1})
	if op == 2 {
		copy(a[18:], dst)
	}
	copy(a[24:], []byte{10, 99, 0, 2})
	return f
}

func htons16(v uint16) uint16 { return v<<8 | v>>8 }

// ifindexIn returns the index of ifname in ns.
func ifindexIn(t *testing.T, ns *testNS, ifname string) int {
	t.Helper()
	idx := 0
	must(t, ns.do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		idx = l.Attrs().Index
		return nil
	}))
	return idx
}

// linkFlags returns the flags of the host's interface ifname.
func linkFlags(t *testing.T, h *testHost, ifname string) net.Flags {
	t.Helper()
	var f net.Flags
	must(t, h.ns.do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		f = l.Attrs().Flags
		return nil
	}))
	return f
}

// linkRxPackets returns the received-packet count of the host's
// interface ifname.
func linkRxPackets(t *testing.T, h *testHost, ifname string) uint64 {
	t.Helper()
	var n uint64
	must(t, h.ns.do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if l.Attrs().Statistics == nil {
			return fmt.Errorf("link %s: no statistics", ifname)
		}
		n = l.Attrs().Statistics.RxPackets
		return nil
	}))
	return n
}
