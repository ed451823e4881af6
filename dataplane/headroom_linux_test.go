package dataplane

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// iflaHeadroom is IFLA_HEADROOM (Linux 6.13+: the interface's
// needed_headroom, dump only), which x/sys/unix does not name yet.
const iflaHeadroom = 68

// TestPodHeadroom checks that a pod's packets leave room for the
// encapsulation: once the host end of its veth is attached, the pod end
// asks for enough headroom that a socket's packet, Ethernet header
// included, has OverheadMPLSoUDP bytes in front (so pushing the tunnel
// headers reallocates nothing), and a detached interface is a bridge port
// no longer.
func TestPodHeadroom(t *testing.T) {
	o := newOverlay(t, EncapMPLSoUDP)
	for _, h := range []*testHost{o.a, o.b} {
		for vrf, p := range h.pods {
			hr := neededHeadroom(t, p.ns, "eth0")
			// LL_RESERVED_SPACE: what a socket reserves for the link layer.
			reserved := (14+hr)&^15 + 16
			if reserved-14 < OverheadMPLSoUDP {
				t.Errorf("pod %s: needed_headroom %d leaves %d bytes in front of the Ethernet header, want ≥ %d", vrf, hr, reserved-14, OverheadMPLSoUDP)
			}
		}
	}
	p := o.a.pods["red"]
	must(t, o.a.ns.do(func() error {
		l, err := netlink.LinkByName(p.hostIf)
		if err != nil {
			return err
		}
		if err := o.a.d.DetachInterface(l.Attrs().Index); err != nil {
			return err
		}
		if l, err = netlink.LinkByName(p.hostIf); err != nil {
			return err
		}
		if l.Attrs().MasterIndex != 0 {
			return fmt.Errorf("detached %s still has master %d", p.hostIf, l.Attrs().MasterIndex)
		}
		return nil
	}))
	if hr := neededHeadroom(t, p.ns, "eth0"); hr != 0 {
		t.Errorf("detached pod: needed_headroom %d, want 0", hr)
	}
}

// neededHeadroom reads an interface's needed_headroom in ns.
func neededHeadroom(t *testing.T, ns *testNS, ifname string) int {
	t.Helper()
	hr := -1
	must(t, ns.do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(l.Attrs().Index)
		req.AddData(msg)
		msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err != nil {
			return fmt.Errorf("get link %s: %w", ifname, err)
		}
		for _, m := range msgs {
			attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
			if err != nil {
				return fmt.Errorf("parse link %s: %w", ifname, err)
			}
			for _, a := range attrs {
				if a.Attr.Type == iflaHeadroom && len(a.Value) >= 2 {
					hr = int(binary.NativeEndian.Uint16(a.Value))
				}
			}
		}
		if hr < 0 {
			return fmt.Errorf("link %s: no IFLA_HEADROOM (kernel older than 6.13?)", ifname)
		}
		return nil
	}))
	return hr
}

// TestEncapsulationWithoutReallocation sends small UDP datagrams and small
// TCP segments (one-byte requests and responses, which TCP sends as clones)
// from a pod over MPLSoUDP and checks that the encapsulating program
// reallocated no packet's head (reallocCounter): the UDP socket's packets
// have the headroom (TestPodHeadroom), and TCP is encapsulated with
// bpf_skb_adjust_room, which a clone's own header satisfies.
func TestEncapsulationWithoutReallocation(t *testing.T) {
	o := newOverlay(t, EncapMPLSoUDP)
	from, to := o.a.pods["red"], o.b.pods["red"]
	rc := newReallocCounter(t, o.a.d.progs.PodIngress)
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Fatalf("enable bpf stats: %v", err)
	}
	defer stats.Close()
	s0, err := o.a.d.progs.PodIngress.Stats()
	must(t, err)

	var rx, tx *net.UDPConn
	must(t, to.ns.do(func() (err error) {
		rx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.addr, 7000)))
		return err
	}))
	defer rx.Close()
	must(t, from.ns.do(func() (err error) {
		tx, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.addr, 7000)))
		return err
	}))
	defer tx.Close()
	const n = 500
	payload := make([]byte, 64)
	buf := make([]byte, 128)
	rx.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		if _, err := tx.Write(payload); err != nil {
			t.Fatalf("send datagram %d: %v", i, err)
		}
		if _, err := rx.Read(buf); err != nil {
			t.Fatalf("receive datagram %d: %v", i, err)
		}
	}
	var ln net.Listener
	must(t, to.ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(to.addr, 7001).String())
		return err
	}))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	var c net.Conn
	must(t, from.ns.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(to.addr, 7001).String(), 5*time.Second)
		return err
	}))
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		if _, err := c.Write(buf[:1]); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
	}
	s1, err := o.a.d.progs.PodIngress.Stats()
	must(t, err)
	got, err := rc.count()
	must(t, err)
	if pkts := s1.RunCount - s0.RunCount; pkts < 2*n {
		t.Fatalf("encapsulating program ran %d times, want at least %d", pkts, 2*n)
	}
	if got != 0 {
		t.Errorf("encapsulation reallocated %d packet heads, want 0", got)
	}
}
