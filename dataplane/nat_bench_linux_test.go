package dataplane

import (
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkSNATEstablished is the per-packet cost of pod_ingress for a TCP
// segment (64 bytes of payload) of an established source-NATed flow: the
// FIB lookup, one flow lookup, the rewrite and the redirect. Compare with
// BenchmarkLocalDelivery and the MPLSoUDP encapsulation (bench_linux_test.go).
func BenchmarkSNATEstablished(b *testing.B) {
	e := natEnv(b)
	must(b, e.d.SetExternal([]External{{VRF: "red", SNAT: true, Addr: hostAddr, PortMin: 10000, PortMax: 59999}}))
	frame := eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40000, inetAddr, 443, 0x10, 64, make([]byte, 64)))
	run(b, e.d.progs.PodIngress, frame) // creates the flow
	benchRun(b, e.d.progs.PodIngress, tcRedirect, frame)
}

// BenchmarkSNATFirstPacket is the cost of a translated flow's first
// packet: FIB lookup, port allocation (a reply entry inserted with
// BPF_NOEXIST) and the forward entry. Each iteration is a new flow (source
// port and destination vary); run with -benchtime at most 60000x.
func BenchmarkSNATFirstPacket(b *testing.B) {
	e := natEnv(b)
	must(b, e.d.SetExternal([]External{{VRF: "red", SNAT: true, Addr: hostAddr, PortMin: 10000, PortMax: 59999}}))
	frames := make([][]byte, 60000)
	for i := range frames {
		dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		frames[i] = eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, uint16(1024+i), dst, 443, tcpSYN, 64, make([]byte, 64)))
	}
	benchRun(b, e.d.progs.PodIngress, tcRedirect, frames...)
	c, err := e.d.ExternalCounters("red")
	must(b, err)
	if c.PortExhausted != 0 {
		b.Fatalf("%d flows found no port", c.PortExhausted)
	}
}

// BenchmarkSNATThroughput measures iperf3 TCP throughput from a host to
// an "internet" server behind its underlay gateway, alternating in one run
// (throughputRounds rounds of throughputSeconds, the median counts): from
// the host's own stack (egress without translation) and from a pod of a
// VRF with SNAT (translated by pod_ingress, redirected out of the
// underlay). Run it with -benchtime=1x.
func BenchmarkSNATThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	for b.Loop() {
		requireRoot(b)
		host, inet := newNS(b, "host"), newNS(b, "inet")
		vethBetween(b, host, "ul", mustMAC("02:00:00:00:00:01"), inet, "ul", mustMAC("02:00:00:00:00:fe"))
		host.ip(b, "addr", "add", "192.0.2.1/24", "dev", "ul")
		host.ip(b, "route", "add", "default", "via", "192.0.2.254")
		if out, err := host.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
			b.Fatalf("enable forwarding: %v: %s", err, out)
		}
		inet.ip(b, "addr", "add", "192.0.2.254/24", "dev", "ul")
		inet.ip(b, "addr", "add", "203.0.113.7/32", "dev", "lo")
		inet.ip(b, "route", "add", "10.0.0.0/8", "via", "192.0.2.1")
		pod := addPod(b, host, "pred", 1, netip.MustParseAddr("10.1.0.2"), podMTU)
		dir := b.TempDir()
		b.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		var d *Dataplane
		err := host.do(func() error {
			var err error
			if d, err = Open(Config{BPFFS: dir, Logger: quiet}); err != nil {
				return err
			}
			// Replies are caught by the underlay's program, which the
			// tunnel attaches.
			if err := d.SetTunnel(Tunnel{Source: netip.MustParseAddr("192.0.2.1"), Underlay: "ul", MTU: 1500}); err != nil {
				return err
			}
			link, err := d.nl.LinkByName("pred")
			if err != nil {
				return err
			}
			if err := d.AttachInterface(Interface{Index: link.Attrs().Index, VRF: "red", PeerMAC: pod.mac}); err != nil {
				return err
			}
			if err := d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.2/32")}, Interface: link.Attrs().Index}}); err != nil {
				return err
			}
			return d.SetExternal([]External{{VRF: "red", SNAT: true, Addr: netip.MustParseAddr("192.0.2.1"), PortMin: 20000, PortMax: 29999}})
		})
		if err != nil {
			b.Fatalf("program the host: %v", err)
		}
		b.Cleanup(func() { d.Destroy() })
		server := netip.MustParseAddr("203.0.113.7")
		runs := map[string][]float64{}
		for range throughputRounds {
			for _, name := range []string{"host", "snat"} {
				from := host
				if name == "snat" {
					from = pod.ns
				}
				g := iperfTo(b, from, inet, server, server)
				runs[name] = append(runs[name], g)
				b.Logf("%s %.2f Gbit/s", name, g)
				time.Sleep(100 * time.Millisecond)
			}
		}
		med := func(r []float64) float64 { slices.Sort(r); return r[len(r)/2] }
		plain, snat := med(runs["host"]), med(runs["snat"])
		b.ReportMetric(plain, "host-Gbit/s")
		b.ReportMetric(snat, "snat-Gbit/s")
		b.ReportMetric(snat/plain, "snat/host")
	}
}
