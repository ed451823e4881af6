package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// spoofHost is a host running the core and the dataplane reconciler with a
// pod in red and a pod in blue (same address), whose underlay link leads
// to a namespace that any test may use as an attacker.
type spoofHost struct {
	*coreHost
	blue     *testPod
	attacker *testNS
}

// Addresses of the spoofing test: the host, the endpoint that red's routes
// go through (which the attacker fakes), and the endpoint of blue's.
var (
	spoofHostAddr = netip.MustParseAddr("192.0.2.1")
	redPeer       = netip.MustParseAddr("192.0.2.2")
	bluePeer      = netip.MustParseAddr("192.0.2.3")
)

func newSpoofHost(t *testing.T) *spoofHost {
	requireRoot(t)
	h := &spoofHost{coreHost: &coreHost{ns: newNS(t, "host")}, attacker: newNS(t, "spoof")}
	vethBetween(t, h.ns, "ul", mustMAC("02:00:00:00:00:01"), h.attacker, "ul", mustMAC("02:00:00:00:00:66"))
	h.ns.ip(t, "addr", "add", spoofHostAddr.String()+"/24", "dev", "ul")
	// The attacker takes red's peer's underlay address.
	h.attacker.ip(t, "addr", "add", redPeer.String()+"/24", "dev", "ul")
	podAddr := netip.MustParseAddr("10.1.0.2")
	h.pod = addPod(t, h.ns, "pred", 1, podAddr, podMTU)
	h.blue = addPod(t, h.ns, "pblue", 2, podAddr, podMTU)
	h.startFresh(t)
	red := hostEdit(spoofHostAddr, "10.1.0.0/24", h.pod, false)
	h.commit(t, func(d *gen.Device) error {
		if err := red(d); err != nil {
			return err
		}
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("blue")
		c := ni.GetOrCreateConfig()
		c.Name, c.Type = ygot.String("blue"), gen.IsthmusTypes_NetworkInstanceType_L3VRF
		c.RouteDistinguisher = ygot.String("65000:2")
		c.ImportRouteTarget, c.ExportRouteTarget = []string{"65000:2"}, []string{"65000:2"}
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
		pc := d.GetOrCreateInterfaces().GetOrCreateInterface("pblue").GetOrCreateConfig()
		pc.Name, pc.Type, pc.NetworkInstance = ygot.String("pblue"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("blue")
		pc.Ipv4Address = ygot.String(podAddr.String() + "/32")
		pc.Mtu = ygot.Uint16(podMTU)
		pc.GetOrCreatePod().PeerMacAddress = ygot.String(h.blue.mac.String())
		return nil
	})
	// What BGP would import: red's remote prefix through redPeer, blue's
	// through bluePeer.
	h.core.FIB().Update([]nos.RouteChange{
		{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.0/24")},
			NextHops: []nos.NextHop{{Endpoint: redPeer, Label: 5000, Encap: nos.EncapMPLSoUDP}}}},
		{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "blue", Prefix: netip.MustParsePrefix("10.2.0.0/24")},
			NextHops: []nos.NextHop{{Endpoint: bluePeer, Label: 5001, Encap: nos.EncapMPLSoUDP}}}},
	})
	waitFor(t, "the fib programmed", func() bool {
		n, err := h.rec.Pending()
		return n == 0 && err == nil && h.rec.Dataplane().Routes() == 4
	})
	return h
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// sendTunnel sends MPLSoUDP datagrams from the attacker's namespace to the
// host: the kernel builds the outer IPv4 and UDP headers, with the
// attacker's (spoofed) source address.
func (h *spoofHost) sendTunnel(t *testing.T, n int, payload []byte) {
	t.Helper()
	err := h.attacker.do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(spoofHostAddr, DefaultUDPPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.Write(payload); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send from the attacker: %v", err)
	}
}

// listen opens a UDP socket in a pod and returns a function that reports
// how many datagrams arrived within a short wait.
func listen(t *testing.T, p *testPod, port uint16) func() int {
	t.Helper()
	var c net.PacketConn
	if err := p.ns.do(func() (err error) {
		c, err = net.ListenPacket("udp4", netip.AddrPortFrom(p.addr, port).String())
		return err
	}); err != nil {
		t.Fatalf("listen in pod: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return func() int {
		n := 0
		buf := make([]byte, 2048)
		for {
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := c.ReadFrom(buf); err != nil {
				return n
			}
			n++
		}
	}
}

// TestSpoofedSourceReachesNoOtherVRF is the threat an underlay attacker
// poses: a namespace that fakes the underlay address of red's peer sends
// MPLSoUDP with blue's label. Nothing reaches blue's pod, every packet is
// counted as unknown-endpoint, in blue and on the tunnel. The same
// attacker can reach red, which its faked address is a peer of: the
// allow set narrows an attacker to the VRFs of the host it impersonates.
func TestSpoofedSourceReachesNoOtherVRF(t *testing.T) {
	h := newSpoofHost(t)
	blueLabel, err := h.core.Labels().VRF("blue")
	must(t, err)
	redLabel, err := h.core.Labels().VRF("red")
	must(t, err)
	inner := ip4{src: netip.MustParseAddr("10.2.0.9"), dst: h.blue.addr, proto: 17, ttl: 64}.
		packet(udp(4000, 7777, []byte("injected")))
	gotBlue, gotRed := listen(t, h.blue, 7777), listen(t, h.pod, 7777)

	const n = 20
	h.sendTunnel(t, n, cat(lse(blueLabel, true, 64), inner))
	if got := gotBlue(); got != 0 {
		t.Errorf("blue's pod received %d injected datagrams", got)
	}
	drops, err := h.rec.Dataplane().Drops("blue")
	must(t, err)
	if drops.UnknownEndpoint != n {
		t.Errorf("blue counted %d unknown-endpoint drops, want %d", drops.UnknownEndpoint, n)
	}
	must(t, h.rec.PublishState())
	err = h.core.Read(func(_, state *gen.Device) error {
		c := state.GetTunnel().GetState().GetCounters()
		if c.GetUnknownEndpoint() != n {
			return fmt.Errorf("tunnel/state/counters/unknown-endpoint %d, want %d", c.GetUnknownEndpoint(), n)
		}
		b := nos.NetworkInstances(state)["blue"].GetState().GetCounters()
		if b.GetUnknownEndpoint() != n {
			return fmt.Errorf("blue's state/counters/unknown-endpoint %d, want %d", b.GetUnknownEndpoint(), n)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// The control: red's label from the same source is delivered, so the
	// frames above did reach the forwarder.
	h.sendTunnel(t, 3, cat(lse(redLabel, true, 64), inner))
	if got := gotRed(); got != 3 {
		t.Errorf("red's pod received %d of 3 datagrams from red's peer address", got)
	}
}

// TestTunnelCountersPublished sends frames that fail before any VRF is
// known and reads the counters back from the core's state tree.
func TestTunnelCountersPublished(t *testing.T) {
	h := newSpoofHost(t)
	redLabel, err := h.core.Labels().VRF("red")
	must(t, err)
	inner := ip4{src: netip.MustParseAddr("10.2.0.9"), dst: h.pod.addr, proto: 17, ttl: 64}.packet(udp(4000, 7777, nil))
	h.sendTunnel(t, 4, cat(lse(1<<19+7, true, 64), inner))   // a label nobody allocated
	h.sendTunnel(t, 5, cat(lse(redLabel, false, 64), inner)) // no bottom of stack
	h.sendTunnel(t, 6, []byte{0, 1})                         // truncated label
	// From an address that is no endpoint at all.
	h.attacker.ip(t, "addr", "add", "192.0.2.99/24", "dev", "ul")
	err = h.attacker.do(func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.99:0")),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(spoofHostAddr, DefaultUDPPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		for range 7 {
			if _, err := c.Write(cat(lse(redLabel, true, 64), inner)); err != nil {
				return err
			}
		}
		return nil
	})
	must(t, err)
	want := map[string]uint64{"unknown-label": 4, "malformed": 11, "unknown-endpoint": 7}
	waitFor(t, "the counters", func() bool {
		must(t, h.rec.PublishState())
		var c *gen.IsthmusTunnel_Tunnel_State_Counters
		h.core.Read(func(_, state *gen.Device) error {
			c = state.GetTunnel().GetState().GetCounters()
			return nil
		})
		got := map[string]uint64{"unknown-label": c.GetUnknownLabel(), "malformed": c.GetMalformed(), "unknown-endpoint": c.GetUnknownEndpoint()}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Logf("tunnel counters %v, want %v", got, want)
			return false
		}
		return true
	})
}
