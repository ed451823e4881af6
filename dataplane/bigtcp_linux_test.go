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
	"golang.org/x/sys/unix"
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

// TestBigTCPThroughRouter: BIG TCP packets cross the MPLSoUDP overlay
// intact when a Linux router forwards the underlay between the hosts. The
// router's ip_rcv trims a packet to its IPv4 total length, so outer
// lengths other than 0 (what the kernel and encapsulation write for a
// packet over 64 KiB) would cut every such packet.
func TestBigTCPThroughRouter(t *testing.T) {
	requireRoot(t)
	r := newNS(t, "router")
	hosts := []*testHost{{ns: newNS(t, "hosta")}, {ns: newNS(t, "hostb")}}
	ul := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")}
	gw := []string{"192.0.2.254", "198.51.100.254"}
	nets := []string{"192.0.2.0/24", "198.51.100.0/24"}
	podNet := []string{"10.1.0", "10.2.0"}
	if out, err := r.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("enable forwarding: %v: %s", err, out)
	}
	for i, h := range hosts {
		side := fmt.Sprintf("r%d", i)
		vethBetween(t, h.ns, "ul", net.HardwareAddr{2, 0, 0, 0, byte(i), 1}, r, side, net.HardwareAddr{2, 0, 0, 0, byte(i), 2})
		h.ns.ip(t, "addr", "add", ul[i].String()+"/24", "dev", "ul")
		h.ns.ip(t, "route", "add", nets[1-i], "via", gw[i])
		r.ip(t, "addr", "add", gw[i]+"/24", "dev", side)
		setIPv4GSO(t, h.ns, bigGSO, "ul")
		setIPv4GSO(t, r, bigGSO, side)
	}
	for i, h := range hosts {
		other := 1 - i
		dir := t.TempDir()
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		addr := netip.MustParseAddr(podNet[i] + ".2")
		pod := addPod(t, h.ns, "pred", byte(i+1), addr, podMTU)
		setIPv4GSO(t, h.ns, bigGSO, "pred")
		setIPv4GSO(t, pod.ns, bigGSO, "eth0")
		h.pods = map[string]*testPod{"red": pod}
		h.cfg = hostConfig{
			Dir:        dir,
			Tunnel:     Tunnel{Source: ul[i], Underlay: "ul"},
			Endpoints:  []Endpoint{{Addr: ul[other]}},
			Interfaces: []ifaceConfig{{Name: "pred", VRF: "red", PeerMAC: pod.mac}},
			Routes: []routeConfig{
				{VRF: "red", Prefix: netip.PrefixFrom(addr, 32), Interface: "pred"},
				{VRF: "red", Prefix: netip.MustParsePrefix(podNet[other] + ".0/24"),
					NextHops: []NextHop{{Endpoint: ul[other], Label: uint32(1000 * (other + 1)), Encap: EncapMPLSoUDP}}},
			},
			Labels: []labelConfig{{Label: uint32(1000 * (i + 1)), VRF: "red"}},
		}
		must(t, h.ns.do(func() error {
			d, err := Open(Config{BPFFS: dir, Logger: quiet})
			if err != nil {
				return err
			}
			h.d = d
			return h.cfg.apply(d)
		}))
		t.Cleanup(func() { h.d.Destroy() })
	}
	var idx int
	must(t, hosts[1].ns.do(func() error {
		l, err := netlink.LinkByName("pred")
		if err == nil {
			idx = l.Attrs().Index
		}
		return err
	}))
	c0, err := hosts[1].d.InterfaceCounters(idx)
	must(t, err)
	bigWrites(t, hosts[0].pods["red"], hosts[1].pods["red"], 64<<20)
	c1, err := hosts[1].d.InterfaceCounters(idx)
	must(t, err)
	mean := float64(c1.TxBytes-c0.TxBytes) / float64(max(1, c1.TxPackets-c0.TxPackets))
	t.Logf("64 MiB byte-identical through the router, delivered in packets of %.0f bytes on average", mean)
	if mean <= 65535 {
		t.Errorf("packets delivered into the pod averaged %.0f bytes; want GSO packets over 64 KiB (the router cut them?)", mean)
	}
}
