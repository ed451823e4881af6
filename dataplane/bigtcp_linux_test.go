package dataplane

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// bigGSO is the IPv4 GSO size the tests give the underlay (BIG TCP).
const bigGSO = 196608

// setIPv4GSO sets the IPv4 GSO and GRO maximum sizes of links in ns: what
// an operator does on an underlay that segments that much, and what the
// CNI plugin then does on both ends of a pod's veth (cni/plugin).
func setIPv4GSO(t testing.TB, ns *testNS, size int, names ...string) {
	t.Helper()
	must(t, ns.do(func() error {
		for _, name := range names {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetGSOIPv4MaxSize(l, size); err != nil {
				return fmt.Errorf("set gso_ipv4_max_size of %s: %w", name, err)
			}
			if err := netlink.LinkSetGROIPv4MaxSize(l, size); err != nil {
				return fmt.Errorf("set gro_ipv4_max_size of %s: %w", name, err)
			}
		}
		return nil
	}))
}

// ipv4GSO returns the IPv4 GSO and GRO maximum sizes of a link in ns.
func ipv4GSO(t testing.TB, ns *testNS, name string) (gso, gro uint32) {
	t.Helper()
	must(t, ns.do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		gso, gro = l.Attrs().GSOIPv4MaxSize, l.Attrs().GROIPv4MaxSize
		return nil
	}))
	return gso, gro
}

// TestBigTCP: with BIG TCP on the underlays and the pod veths, TCP crosses
// the MPLSoUDP overlay in GSO packets over 64 KiB (outer IPv4 and UDP
// lengths 0, which decapsulation accepts only for such packets),
// byte-identical, whether the underlay takes them whole or the kernel has
// to segment the encapsulated packets for it.
func TestBigTCP(t *testing.T) {
	o := newOverlay(t, EncapMPLSoUDP)
	from, to := o.a.pods["red"], o.b.pods["red"]
	for _, h := range []*testHost{o.a, o.b} {
		setIPv4GSO(t, h.ns, bigGSO, "ul", h.pods["red"].hostIf)
		setIPv4GSO(t, h.pods["red"].ns, bigGSO, "eth0")
	}
	if gso, gro := ipv4GSO(t, from.ns, "eth0"); gso != bigGSO || gro != bigGSO {
		t.Fatalf("pod eth0: gso_ipv4_max_size %d, gro_ipv4_max_size %d; want %d", gso, gro, bigGSO)
	}
	var idx int
	must(t, o.b.ns.do(func() error {
		l, err := netlink.LinkByName(to.hostIf)
		if err == nil {
			idx = l.Attrs().Index
		}
		return err
	}))
	// delivered is the mean size of what the forwarder delivered into
	// the receiving pod during fn.
	delivered := func(fn func()) float64 {
		c0, err := o.b.d.InterfaceCounters(idx)
		must(t, err)
		fn()
		c1, err := o.b.d.InterfaceCounters(idx)
		must(t, err)
		return float64(c1.TxBytes-c0.TxBytes) / float64(max(1, c1.TxPackets-c0.TxPackets))
	}
	mean := delivered(func() { bigWrites(t, from, to, 64<<20) })
	t.Logf("64 MiB byte-identical, delivered in packets of %.0f bytes on average", mean)
	if mean <= 65535 {
		t.Errorf("packets delivered into the pod averaged %.0f bytes; want GSO packets over 64 KiB", mean)
	}
	// An underlay that cannot segment UDP tunnels: the kernel segments
	// the encapsulated packets itself, outer lengths included.
	if out, err := o.a.ns.cmd("ethtool", "-K", "ul", "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off").CombinedOutput(); err != nil {
		t.Fatalf("turn tunnel segmentation off: %v: %s", err, out)
	}
	if mean := delivered(func() { transfer(t, from, to, 8<<20) }); mean > 1500 {
		t.Errorf("packets delivered into the pod averaged %.0f bytes; want segments (the underlay segments nothing)", mean)
	}
}

// bigWrites sends size bytes over TCP from one pod to another in writes
// of 4 MiB, so that the sender's TCP fills its GSO packets, and fails
// unless the receiver got exactly those bytes.
func bigWrites(t *testing.T, from, to *testPod, size int) {
	t.Helper()
	var ln net.Listener
	must(t, to.ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(to.addr, 5002).String())
		return err
	}))
	defer ln.Close()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{4, 5, 6}).Read(data)
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(xferTimeout))
		buf := make([]byte, size+1)
		n, err := io.ReadFull(c, buf)
		if err != io.ErrUnexpectedEOF {
			got <- fmt.Errorf("read %d bytes: %v", n, err)
			return
		}
		if !bytes.Equal(buf[:n], data) {
			got <- fmt.Errorf("received %d bytes that differ from the %d sent", n, size)
			return
		}
		got <- nil
	}()
	var c net.Conn
	must(t, from.ns.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(to.addr, 5002).String(), 5*time.Second)
		return err
	}))
	c.SetDeadline(time.Now().Add(xferTimeout))
	for off := 0; off < size; off += 4 << 20 {
		if _, err := c.Write(data[off:min(size, off+4<<20)]); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	c.Close()
	if err := <-got; err != nil {
		t.Fatalf("receive: %v", err)
	}
}
