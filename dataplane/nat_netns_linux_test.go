package dataplane

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// extVRF configures an L3VRF with pool 10.1.0.0/24, pod interface ifname
// (address 10.1.0.2) and external connectivity ext.
func extVRF(name, rd, ifname string, pod *testPod, ext func(*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config)) func(*gen.Device) {
	return func(d *gen.Device) {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance(name)
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String(name), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String(rd)
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
		pc := d.GetOrCreateInterfaces().GetOrCreateInterface(ifname).GetOrCreateConfig()
		pc.Name, pc.Type, pc.NetworkInstance = ygot.String(ifname), gen.IsthmusTypes_InterfaceType_POD, ygot.String(name)
		pc.Ipv4Address = ygot.String(pod.addr.String() + "/32")
		pc.Mtu = ygot.Uint16(podMTU)
		pc.GetOrCreatePod().PeerMacAddress = ygot.String(pod.mac.String())
		ext(ni.GetOrCreateExternal().GetOrCreateConfig())
	}
}

// serveWho opens a TCP listener at addr inside ns and answers every
// connection with the address it came from, then closes it.
func serveWho(t *testing.T, ns *testNS, addr string) {
	t.Helper()
	var ln net.Listener
	must(t, ns.do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
}

// askWho connects from ns to addr and returns what the listener said (the
// address it saw the connection from).
func askWho(ns *testNS, addr string) (string, error) {
	var said string
	err := ns.do(func() error {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		said = strings.TrimSpace(string(b))
		return err
	})
	return said, err
}

// TestExternalNamespaces: on a host running the core and the dataplane
// reconciler, with an underlay gateway namespace that holds an "internet"
// address (203.0.113.7), two VRFs have a pod with the same address
// 10.1.0.2. red is the default pod network (SNAT ports 20000..20999 and
// host access); blue has SNAT with ports 21000..21999 and no host access.
// Both pods reach the internet address at once, which sees only the
// host's address, each from its own VRF's range; ICMP echo goes through
// too. The host reaches red's pod by TCP (the kubelet's probe) and red's
// pod reaches the host; blue's pod does not reach the host. The kernel
// keeps the ranges out of its own ephemeral ports, and the state shows
// the translations.
func TestExternalNamespaces(t *testing.T) {
	requireRoot(t)
	h, inet := gatewayHost(t)
	inet.ip(t, "addr", "add", "203.0.113.7/32", "dev", "lo")
	pod := netip.MustParseAddr("10.1.0.2")
	red := addPod(t, h.ns, "pred", 1, pod, podMTU)
	blue := addPod(t, h.ns, "pblue", 2, pod, podMTU)
	h.startFresh(t)
	h.commit(t, edits(
		gatewayUnderlay,
		extVRF("red", "65000:1", "pred", red, func(c *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config) {
			c.DefaultPodNetwork, c.PortMin, c.PortMax = ygot.Bool(true), ygot.Uint16(20000), ygot.Uint16(20999)
		}),
		extVRF("blue", "65000:2", "pblue", blue, func(c *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config) {
			c.Mode, c.PortMin, c.PortMax = gen.IsthmusExternal_ExternalMode_SNAT, ygot.Uint16(21000), ygot.Uint16(21999)
		}),
	))

	// Both tenants reach the internet at once; it sees the host only.
	serveWho(t, inet, "203.0.113.7:80")
	var wg sync.WaitGroup
	seen := make([]string, 2)
	errs := make([]error, 2)
	for i, p := range []*testPod{red, blue} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen[i], errs[i] = askWho(p.ns, "203.0.113.7:80")
		}()
	}
	wg.Wait()
	for i, lo := range []int{20000, 21000} {
		if errs[i] != nil {
			t.Fatalf("pod %d to the internet: %v", i, errs[i])
		}
		ap, err := netip.ParseAddrPort(seen[i])
		if err != nil || ap.Addr() != netip.MustParseAddr("192.0.2.1") || int(ap.Port()) < lo || int(ap.Port()) > lo+999 {
			t.Errorf("pod %d: the internet saw %q, want 192.0.2.1 with a port in %d..%d", i, seen[i], lo, lo+999)
		}
	}
	waitPing(t, red, netip.MustParseAddr("203.0.113.7"), true)

	// Host access: the host probes red's pod; red's pod reaches the host,
	// blue's does not.
	serveWho(t, red.ns, "10.1.0.2:8080")
	if said, err := askWho(h.ns, "10.1.0.2:8080"); err != nil || !strings.HasPrefix(said, "192.0.2.1:") {
		t.Errorf("host to red's pod: %q, %v; want a connection from 192.0.2.1", said, err)
	}
	serveWho(t, h.ns, "192.0.2.1:10250")
	if said, err := askWho(red.ns, "192.0.2.1:10250"); err != nil || !strings.HasPrefix(said, "10.1.0.2:") {
		t.Errorf("red's pod to the host: %q, %v; want a connection from 10.1.0.2", said, err)
	}
	if _, err := askWho(blue.ns, "192.0.2.1:10250"); err == nil {
		t.Errorf("blue's pod reached the host without host access")
	}

	// The kernel keeps the SNAT ports for the translations.
	var reserved []byte
	must(t, h.ns.do(func() (err error) {
		reserved, err = os.ReadFile(filepath.Clean(reservedPortsFile))
		return err
	}))
	if got := strings.TrimSpace(string(reserved)); got != "20000-21999" {
		t.Errorf("reserved ports %q, want 20000-21999", got)
	}

	must(t, h.rec.refreshExternal())
	err := h.core.Read(func(_, state *gen.Device) error {
		var errs []error
		for _, vrf := range []string{"red", "blue"} {
			st := nos.NetworkInstances(state)[vrf].GetExternal().GetState()
			c := st.GetCounters()
			if st.GetMode() != gen.IsthmusExternal_ExternalMode_SNAT || c.GetFlows() == 0 || c.GetTranslations() == 0 || st.GetSnatAddress() != "192.0.2.1" {
				errs = append(errs, fmt.Errorf("%s: external state %+v, counters %+v", vrf, st, c))
			}
		}
		if !nos.NetworkInstances(state)["red"].GetExternal().GetState().GetHostAccess() ||
			nos.NetworkInstances(state)["red"].GetExternal().GetState().GetCounters().GetHostPackets() == 0 {
			errs = append(errs, errors.New("red: host access not in its state"))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
}

// serveName opens a TCP listener at addr inside ns that answers every
// connection with name and the address the connection came from.
func serveName(t *testing.T, ns *testNS, addr, name string) {
	t.Helper()
	var ln net.Listener
	must(t, ns.do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			c.Close()
		}
	}()
}

// TestFloatingNamespaces: a data-center client reaches a pod on host A by
// its floating IP 198.51.100.5 (routed to A, as A's BGP route says), and
// the pod sees the client's own address; after the binding moves to a pod
// on host B (and the client's route with it, as B's route replaces A's),
// the same address reaches B's pod. Each pod's connections leave from the
// floating IP while it holds it.
func TestFloatingNamespaces(t *testing.T) {
	requireRoot(t)
	dc := newNS(t, "dc")
	dc.ip(t, "addr", "add", "203.0.113.7/32", "dev", "lo")
	fip := netip.MustParseAddr("198.51.100.5")
	type host struct {
		ns  *testNS
		pod *testPod
		d   *Dataplane
	}
	var hosts []*host
	for i, addrs := range [][2]string{{"192.0.2.1", "192.0.2.2"}, {"192.0.2.5", "192.0.2.6"}} {
		h := &host{ns: newNS(t, fmt.Sprintf("host%d", i))}
		dcIf := fmt.Sprintf("h%d", i)
		vethBetween(t, h.ns, "ul", mustMAC(fmt.Sprintf("02:00:00:00:0%d:01", i)), dc, dcIf, mustMAC(fmt.Sprintf("02:00:00:00:0%d:fe", i)))
		h.ns.ip(t, "addr", "add", addrs[0]+"/30", "dev", "ul")
		h.ns.ip(t, "route", "add", "default", "via", addrs[1])
		dc.ip(t, "addr", "add", addrs[1]+"/30", "dev", dcIf)
		if out, err := h.ns.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
			t.Fatalf("enable forwarding: %v: %s", err, out)
		}
		h.pod = addPod(t, h.ns, "pred", byte(i+1), netip.AddrFrom4([4]byte{10, 1, 0, byte(2 + i)}), podMTU)
		dir := t.TempDir()
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		err := h.ns.do(func() error {
			var err error
			if h.d, err = Open(Config{BPFFS: dir, Logger: quiet}); err != nil {
				return err
			}
			if err := h.d.SetTunnel(Tunnel{Source: netip.MustParseAddr(addrs[0]), Underlay: "ul", MTU: 1500}); err != nil {
				return err
			}
			link, err := h.d.nl.LinkByName("pred")
			if err != nil {
				return err
			}
			if err := h.d.AttachInterface(Interface{Index: link.Attrs().Index, VRF: "red", PeerMAC: h.pod.mac}); err != nil {
				return err
			}
			return h.d.SetRoutes([]Route{{RouteKey: RouteKey{VRF: "red", Prefix: netip.PrefixFrom(h.pod.addr, 32)}, Interface: link.Attrs().Index}})
		})
		if err != nil {
			t.Fatalf("program host %d: %v", i, err)
		}
		t.Cleanup(func() { h.d.Destroy() })
		serveName(t, h.pod.ns, h.pod.addr.String()+":8080", fmt.Sprintf("pod%d", i))
		hosts = append(hosts, h)
	}
	serveWho(t, dc, "203.0.113.7:80")
	for i, h := range hosts {
		if i > 0 {
			// The move: A lets go, B takes the address, the client's route
			// follows B's advertisement.
			must(t, hosts[0].d.SetFloating(nil))
		}
		must(t, h.d.SetFloating([]Floating{{VRF: "red", Addr: fip, Pod: h.pod.addr}}))
		dc.ip(t, "route", "replace", fip.String()+"/32", "via", []string{"192.0.2.1", "192.0.2.5"}[i], "src", "203.0.113.7")
		said, err := askWho(dc, fip.String()+":8080")
		want := fmt.Sprintf("pod%d 203.0.113.7:", i)
		if err != nil || !strings.HasPrefix(said, want) {
			t.Fatalf("client to the floating IP (bound on host %d): %q, %v; want %q…", i, said, err, want)
		}
		said, err = askWho(h.pod.ns, "203.0.113.7:80")
		if err != nil || !strings.HasPrefix(said, fip.String()+":") {
			t.Errorf("pod on host %d to the client: the client saw %q (%v), want the floating IP", i, said, err)
		}
	}
}
