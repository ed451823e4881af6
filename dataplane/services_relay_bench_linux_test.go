package dataplane

import (
	"bytes"
	"net/netip"
	"testing"
)

// BenchmarkServiceTunnelPacket is the per-packet cost of underlay_ingress
// for a TCP segment from the data center (endpoint 192.0.2.3) to a service
// whose external traffic goes to every backend (one local, one on
// 192.0.2.2's host), the flow established:
//
//   - plain: to a local pod's own address (decapsulated and delivered);
//   - vip-local: to the service, translated to the local backend and
//     delivered;
//   - vip-carried: to the service, carried on to the other host (outer
//     header rewritten in place, sent back out of the underlay).
func BenchmarkServiceTunnelPacket(b *testing.B) {
	e := newPacketEnv(b)
	must(b, e.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(vipAddr, 32)},
		NextHops: []NextHop{{Endpoint: remote2, Label: 555, Encap: EncapMPLSoUDP}}}}))
	must(b, e.d.SetServices([]Service{{ServiceKey: webKey, ExternalAll: true,
		Backends: []Backend{backend(pod2Addr, 8080, true), backend(farAddr, 8080, false)}}}))
	frame := func(dst netip.Addr, dport, sport uint16) []byte {
		return underlayFrame(remote3, 6635, lse(1000, true, 63), tcpPkt(dcClient, sport, dst, dport, 0x10, 63, make([]byte, 64)))
	}
	// One established flow each way: the first ports that go local and
	// that are carried on.
	var local, carried []byte
	for sport := uint16(41000); local == nil || carried == nil; sport++ {
		f := frame(vipAddr, 80, sport)
		_, out := run(b, e.d.progs.UnderlayIngress, f)
		if bytes.Equal(out[:6], pod2PeerMAC) {
			if local == nil {
				local = f
			}
		} else if carried == nil {
			carried = f
		}
	}
	b.Run("plain", func(b *testing.B) {
		benchRun(b, e.d.progs.UnderlayIngress, tcRedirect, frame(pod2Addr, 8080, 40000))
	})
	b.Run("vip-local", func(b *testing.B) {
		benchRun(b, e.d.progs.UnderlayIngress, tcRedirect, local)
	})
	b.Run("vip-carried", func(b *testing.B) {
		benchRun(b, e.d.progs.UnderlayIngress, tcRedirect, carried)
	})
}
