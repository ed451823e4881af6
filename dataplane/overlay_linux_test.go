package dataplane

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostConfig is everything one host's dataplane is programmed with. The
// restart test hands it to a loader process as JSON.
type hostConfig struct {
	Dir        string
	Tunnel     Tunnel
	Endpoints  []Endpoint
	Interfaces []ifaceConfig
	Routes     []routeConfig
	Labels     []labelConfig
}

type ifaceConfig struct {
	Name, VRF string
	PeerMAC   net.HardwareAddr
}

type routeConfig struct {
	VRF       string
	Prefix    netip.Prefix
	Interface string
	NextHops  []NextHop
}

type labelConfig struct {
	Label          uint32
	VRF, Interface string
}

// apply programs c into d. It must run in the host's namespace.
func (c hostConfig) apply(d *Dataplane) error {
	index := func(name string) (int, error) {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return 0, fmt.Errorf("find %s: %w", name, err)
		}
		return l.Attrs().Index, nil
	}
	if err := d.SetTunnel(c.Tunnel); err != nil {
		return err
	}
	for _, ep := range c.Endpoints {
		if err := d.SetEndpoint(ep); err != nil {
			return err
		}
	}
	for _, ifc := range c.Interfaces {
		i, err := index(ifc.Name)
		if err != nil {
			return err
		}
		if err := d.AttachInterface(Interface{Index: i, VRF: ifc.VRF, PeerMAC: ifc.PeerMAC}); err != nil {
			return err
		}
	}
	var routes []Route
	for _, r := range c.Routes {
		rt := Route{RouteKey: RouteKey{VRF: r.VRF, Prefix: r.Prefix}, NextHops: r.NextHops}
		if r.Interface != "" {
			i, err := index(r.Interface)
			if err != nil {
				return err
			}
			rt.Interface = i
		}
		routes = append(routes, rt)
	}
	if err := d.SetRoutes(routes); err != nil {
		return err
	}
	for _, r := range routes {
		for _, nh := range r.NextHops {
			if err := d.AllowEndpoint(nh.Endpoint, r.VRF); err != nil {
				return err
			}
		}
	}
	for _, l := range c.Labels {
		lt := LabelTarget{VRF: l.VRF}
		if l.Interface != "" {
			i, err := index(l.Interface)
			if err != nil {
				return err
			}
			lt.Interface = i
		}
		if err := d.SetLabel(l.Label, lt); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := d.ResolveOnce()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testHost is one host of the overlay: a namespace with an underlay veth
// and a dataplane.
type testHost struct {
	ns   *testNS
	cfg  hostConfig
	d    *Dataplane
	pods map[string]*testPod // by VRF
}

// overlay is two hosts on one underlay link, each with a pod in VRF red
// and a pod in VRF blue that reuses the red pod's address.
type overlay struct {
	a, b *testHost
}

const podMTU = 1500 - OverheadMPLSoUDP

func newOverlay(t testing.TB, encap Encap) *overlay {
	requireRoot(t)
	o := &overlay{}
	hosts := []*testHost{{ns: newNS(t, "hosta")}, {ns: newNS(t, "hostb")}}
	o.a, o.b = hosts[0], hosts[1]
	ulMAC := []net.HardwareAddr{mustMAC("02:00:00:00:00:01"), mustMAC("02:00:00:00:00:02")}
	ulAddr := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}
	vethBetween(t, o.a.ns, "ul", ulMAC[0], o.b.ns, "ul", ulMAC[1])
	podNet := []string{"10.1.0", "10.2.0"}
	for i, h := range hosts {
		h.ns.ip(t, "addr", "add", ulAddr[i].String()+"/24", "dev", "ul")
	}
	for i, h := range hosts {
		other := 1 - i
		dir := t.TempDir()
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		h.cfg = hostConfig{
			Dir:       dir,
			Tunnel:    Tunnel{Source: ulAddr[i], Underlay: "ul", TransportLabel: uint32(16000 + i), MPLSoMPLS: encap == EncapMPLSoMPLS},
			Endpoints: []Endpoint{{Addr: ulAddr[other], TransportLabel: uint32(16000 + other)}},
		}
		h.pods = map[string]*testPod{}
		for v, vrf := range []string{"red", "blue"} {
			addr := netip.MustParseAddr(podNet[i] + ".2")
			hostIf := "p" + vrf
			pod := addPod(t, h.ns, hostIf, byte(i*16+v+1), addr, podMTU)
			h.pods[vrf] = pod
			h.cfg.Interfaces = append(h.cfg.Interfaces, ifaceConfig{Name: hostIf, VRF: vrf, PeerMAC: pod.mac})
			h.cfg.Routes = append(h.cfg.Routes,
				routeConfig{VRF: vrf, Prefix: netip.PrefixFrom(addr, 32), Interface: hostIf},
				routeConfig{VRF: vrf, Prefix: netip.MustParsePrefix(podNet[other] + ".0/24"),
					NextHops: []NextHop{{Endpoint: ulAddr[other], Label: uint32(1000*(other+1) + v), Encap: encap}}})
			// Per-VRF label for red, per-interface label for blue.
			lc := labelConfig{Label: uint32(1000*(i+1) + v), VRF: vrf}
			if vrf == "blue" {
				lc.Interface = hostIf
			}
			h.cfg.Labels = append(h.cfg.Labels, lc)
		}
		err := h.ns.do(func() error {
			d, err := Open(Config{BPFFS: h.cfg.Dir, Logger: quiet})
			if err != nil {
				return err
			}
			h.d = d
			return h.cfg.apply(d)
		})
		if err != nil {
			t.Fatalf("program host %d: %v", i, err)
		}
		t.Cleanup(func() { h.d.Destroy() })
	}
	return o
}

// transfer sends size pseudo-random bytes over TCP from one pod to another
// and fails unless the receiver got exactly the same bytes.
var xferTimeout = 60 * time.Second

func transfer(t *testing.T, from, to *testPod, size int64) {
	t.Helper()
	var ln net.Listener
	if err := to.ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(to.addr, 5001).String())
		return err
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		got <- result{n, h.Sum(nil), err}
	}()
	var c net.Conn
	if err := from.ns.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(to.addr, 5001).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(xferTimeout))
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), size), h)
	start := time.Now()
	if _, err := io.Copy(c, src); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Close()
	r := <-got
	if r.err != nil {
		t.Fatalf("receive: %v", r.err)
	}
	if r.n != size || string(r.sum) != string(h.Sum(nil)) {
		t.Fatalf("received %d bytes (sha256 %x), sent %d (sha256 %x)", r.n, r.sum, size, h.Sum(nil))
	}
	t.Logf("%d MiB byte-identical in %v", size>>20, time.Since(start).Round(time.Millisecond))
}

// capture runs tcpdump on an interface until stop is called, and returns
// the decoded packets, one line each.
func capture(t *testing.T, ns *testNS, ifname string) (stop func() []string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ul.pcap")
	c := ns.cmd("tcpdump", "-i", ifname, "-nn", "-s", "96", "-w", file, "not", "arp")
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			if strings.Contains(s.Text(), "listening on") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		t.Fatal("tcpdump did not start")
	}
	return func() []string {
		time.Sleep(200 * time.Millisecond)
		c.Process.Signal(os.Interrupt)
		c.Wait()
		out, err := exec.Command("tcpdump", "-nn", "-q", "-r", file).Output()
		if err != nil {
			t.Fatalf("read capture: %v", err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
}

func testOverlay(t *testing.T, encap Encap) *overlay {
	o := newOverlay(t, encap)
	src, dst := o.a.pods["red"], o.b.pods["red"]
	var stop func() []string
	if encap == EncapMPLSoUDP {
		stop = capture(t, o.a.ns, "ul")
	}
	if out, err := src.ping(dst.addr, "-c", "3", "-i", "0.2", "-W", "2"); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	transfer(t, src, dst, 100<<20)
	transfer(t, dst, src, 10<<20)
	if stop != nil {
		lines := stop()
		only := regexp.MustCompile(`^\S+ IP 192\.0\.2\.[12]\.\d+ > 192\.0\.2\.[12]\.6635: UDP, length \d+$`)
		for _, l := range lines {
			if !only.MatchString(l) {
				t.Fatalf("underlay carried a packet that is not host-to-host UDP/6635: %q", l)
			}
		}
		t.Logf("underlay capture: %d packets, all UDP/6635 between host addresses", len(lines))
	}
	return o
}

func TestOverlayMPLSoUDP(t *testing.T) { testOverlay(t, EncapMPLSoUDP) }

func TestOverlayMPLSoMPLS(t *testing.T) { testOverlay(t, EncapMPLSoMPLS) }

func TestVRFsIsolated(t *testing.T) {
	o := newOverlay(t, EncapMPLSoUDP)
	bRed, bBlue := o.b.pods["red"], o.b.pods["blue"]
	var idx = map[*testPod]int{}
	if err := o.b.ns.do(func() error {
		for _, p := range []*testPod{bRed, bBlue} {
			l, err := netlink.LinkByName(p.hostIf)
			if err != nil {
				return err
			}
			idx[p] = l.Attrs().Index
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, vrf := range []string{"red", "blue"} {
		before := map[*testPod]InterfaceCounters{}
		for p, i := range idx {
			c, err := o.b.d.InterfaceCounters(i)
			must(t, err)
			before[p] = c
		}
		// Both pods on host a are 10.1.0.2 and both on host b are 10.2.0.2.
		if out, err := o.a.pods[vrf].ping(bRed.addr, "-c", "5", "-i", "0.05", "-W", "2"); err != nil {
			t.Fatalf("ping in %s: %v\n%s", vrf, err, out)
		}
		for p, i := range idx {
			c, err := o.b.d.InterfaceCounters(i)
			must(t, err)
			got := c.TxPackets - before[p].TxPackets
			want := uint64(0)
			if o.b.pods[vrf] == p {
				want = 5
			}
			if got != want {
				t.Errorf("ping in %s: pod %s on host b received %d packets, want %d", vrf, p.hostIf, got, want)
			}
		}
	}
	// A route that exists only in red does not leak into blue.
	must(t, o.a.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.3.0.0/24")},
		NextHops: []NextHop{{Endpoint: netip.MustParseAddr("192.0.2.2"), Label: 1000, Encap: EncapMPLSoUDP}}}}))
	before, err := o.a.d.Drops("blue")
	must(t, err)
	o.a.pods["blue"].ping(netip.MustParseAddr("10.3.0.9"), "-c", "1", "-W", "1")
	after, err := o.a.d.Drops("blue")
	must(t, err)
	if after.NoRoute != before.NoRoute+1 {
		t.Errorf("blue no-route drops went from %d to %d, want +1", before.NoRoute, after.NoRoute)
	}
}
