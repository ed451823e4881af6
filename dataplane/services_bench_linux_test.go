package dataplane

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// BenchmarkServicePacket is the per-packet cost of pod_ingress for a TCP
// segment delivered to a local pod, with a service configured:
//
//   - plain: to the pod's own address (the flow table is not consulted:
//     two array reads of flow_hints say no flow can concern it);
//   - vip-established: to the service, whose flow exists (one flow lookup,
//     DNAT with the checksum helpers, the backend's counters);
//   - vip-first: to the service, each packet a new flow (service lookup,
//     Maglev pick, two flow entries written). Run with -benchtime at most
//     60000x: each iteration takes a source port of its own.
func BenchmarkServicePacket(b *testing.B) {
	e := newPacketEnv(b)
	must(b, e.d.SetServices([]Service{{ServiceKey: webKey, Backends: []Backend{backend(pod2Addr, 8080, true)}}}))
	b.Run("plain", func(b *testing.B) {
		frame := eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40000, pod2Addr, 8080, 0x10, 64, make([]byte, 64)))
		benchRun(b, e.d.progs.PodIngress, tcRedirect, frame)
	})
	b.Run("vip-established", func(b *testing.B) {
		frame := eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, 40000, vipAddr, 80, 0x10, 64, make([]byte, 64)))
		run(b, e.d.progs.PodIngress, frame) // creates the flow
		benchRun(b, e.d.progs.PodIngress, tcRedirect, frame)
	})
	b.Run("vip-first", func(b *testing.B) {
		frames := make([][]byte, 60000)
		for i := range frames {
			frames[i] = eth(loMAC, pod1PeerMAC, 0x0800, tcpPkt(pod1Addr, uint16(1024+i), vipAddr, 80, tcpSYN, 64, make([]byte, 64)))
		}
		if _, err := e.d.deleteFlows(func(forwarderFlowKey, *forwarderFlow) bool { return true }); err != nil {
			b.Fatal(err)
		}
		benchRun(b, e.d.progs.PodIngress, tcRedirect, frames...)
	})
}

// BenchmarkProgramServices programs 10,000 services of 10 backends each in
// one SetServices call, into an empty table.
func BenchmarkProgramServices(b *testing.B) {
	isolate(b)
	d := openTest(b)
	const n, per = 10000, 10
	svcs := make([]Service, n)
	keys := make([]ServiceKey, n)
	for i := range svcs {
		keys[i] = ServiceKey{VRF: "bench", Addr: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Proto: TCP, Port: 80}
		svcs[i].ServiceKey = keys[i]
		for j := range per {
			svcs[i].Backends = append(svcs[i].Backends, backend(netip.AddrFrom4([4]byte{10, 1, byte(i >> 4), byte(i&15*per + j)}), 8080, j%2 == 0))
		}
	}
	var total, cpu time.Duration
	for b.Loop() {
		start, c := time.Now(), cpuTime()
		if err := d.SetServices(svcs); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		cpu += cpuTime() - c
		b.StopTimer()
		if err := d.DeleteServices(keys); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/10k-services")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/10k-services")
}

// BenchmarkServiceThroughput measures iperf3 TCP throughput from a pod on
// one host to a pod on the other, to the pod's own address and to a
// service whose one backend is that pod, alternating in one run
// (throughputRounds rounds of throughputSeconds; the median counts). Run
// it with -benchtime=1x.
func BenchmarkServiceThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	for b.Loop() {
		o := newOverlay(b, EncapMPLSoUDP)
		from, to := o.a.pods["red"], o.b.pods["red"]
		key := ServiceKey{VRF: "red", Addr: vipAddr, Proto: TCP, Port: 5201}
		must(b, o.a.d.SetServices([]Service{{ServiceKey: key, Backends: []Backend{backend(to.addr, 5201, false)}}}))
		runs := map[string][]float64{}
		for range throughputRounds {
			for _, name := range []string{"backend", "vip"} {
				dst := to.addr
				if name == "vip" {
					dst = vipAddr
				}
				g := iperfTo(b, from.ns, to.ns, to.addr, dst)
				runs[name] = append(runs[name], g)
				b.Logf("%s %.2f Gbit/s", name, g)
			}
		}
		med := func(r []float64) float64 { slices.Sort(r); return r[len(r)/2] }
		be, vip := med(runs["backend"]), med(runs["vip"])
		b.ReportMetric(be, "backend-Gbit/s")
		b.ReportMetric(vip, "vip-Gbit/s")
		b.ReportMetric(vip/be, "vip/backend")
	}
}

// iperfTo runs an iperf3 server in server bound to bind and a client in
// from toward dst (the server's own address or a service translated to
// it), and returns Gbit/s.
func iperfTo(b testing.TB, from, server *testNS, bind, dst netip.Addr) float64 {
	b.Helper()
	srv := server.cmd("iperf3", "-s", "-1", "-B", bind.String())
	if err := srv.Start(); err != nil {
		b.Fatalf("start iperf3 server: %v", err)
	}
	defer srv.Wait()
	time.Sleep(300 * time.Millisecond)
	out, err := from.cmd("iperf3", "-c", dst.String(), "-t", fmt.Sprint(throughputSeconds), "-J").Output()
	if err != nil {
		srv.Process.Kill()
		b.Fatalf("iperf3 to %v: %v\n%s", dst, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("parse iperf3 output: %v", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}
