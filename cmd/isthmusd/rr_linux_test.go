package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
)

// frrClient is an FRR bgpd in a namespace of its own, joined to the test's
// namespace by a veth: host side hostAddr, FRR side addr.
type frrClient struct {
	t        *testing.T
	ns       *testbed.NS
	hostAddr string
	addr     string
	dir      string
	cmd      *exec.Cmd
}

// newFRRClient builds the namespace and the veth (subnet 10.214.x.0/30)
// and removes the host end at cleanup (the namespace goes with its end).
func newFRRClient(t *testing.T, x int) *frrClient {
	t.Helper()
	ns := testbed.NewNS(t)
	f := &frrClient{t: t, ns: ns, hostAddr: fmt.Sprintf("10.214.%d.1", x), addr: fmt.Sprintf("10.214.%d.2", x)}
	host := fmt.Sprintf("irr%dh%d", os.Getpid()%10000, x)
	peer := strings.Replace(host, "h", "p", 1)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	sh("link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	sh("link", "set", peer, "netns", ns.Name)
	sh("addr", "add", f.hostAddr+"/30", "dev", host)
	sh("link", "set", host, "up")
	sh("-n", ns.Name, "addr", "add", f.addr+"/30", "dev", peer)
	sh("-n", ns.Name, "link", "set", peer, "up")
	return f
}

// start runs bgpd (no zebra) with conf inside the namespace.
func (f *frrClient) start(conf string) {
	f.t.Helper()
	dir, err := os.MkdirTemp("", "isthmusd-frr-")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { os.RemoveAll(dir) })
	f.dir = dir
	if err := os.WriteFile(filepath.Join(dir, "bgpd.conf"), []byte(conf), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.cmd = exec.Command("ip", "netns", "exec", f.ns.Name, "/usr/lib/frr/bgpd", "-Z", "-S", "-u", "root", "-g", "root",
		"-f", filepath.Join(dir, "bgpd.conf"), "-i", filepath.Join(dir, "bgpd.pid"),
		"--vty_socket", dir, "--log", "file:"+filepath.Join(dir, "bgpd.log"))
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := f.cmd.Start(); err != nil {
		f.t.Fatalf("start bgpd: %v", err)
	}
	f.t.Cleanup(func() {
		syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
		f.cmd.Wait()
	})
	waitFor(f.t, 10*time.Second, "bgpd vty", func() bool {
		_, err := os.Stat(filepath.Join(dir, "bgpd.vty"))
		return err == nil
	})
}

// vpnPaths returns FRR's paths for rd:prefix.
func (f *frrClient) vpnPaths(rd, prefix string) []frrVPNPath {
	out, err := exec.Command("vtysh", "--vty_socket", f.dir, "-d", "bgpd",
		"-c", fmt.Sprintf("show bgp ipv4 vpn rd %s %s json", rd, prefix)).CombinedOutput()
	if err != nil {
		f.t.Fatalf("vtysh: %v: %s", err, out)
	}
	var m map[string]struct {
		Paths []frrVPNPath `json:"paths"`
	}
	if json.Unmarshal(out, &m) != nil {
		return nil
	}
	return m[rd].Paths
}

func (f *frrClient) log() string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "bgpd.log"))
	return string(b)
}

// frrVPNPath is one VPNv4 path as FRR shows it.
type frrVPNPath struct {
	RemoteLabel       int `json:"remoteLabel"`
	ExtendedCommunity struct {
		String string `json:"string"`
	} `json:"extendedCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRouteReflectorReflectsVPNv4: isthmusd in role rr, configured only by
// its startup config, accepts iBGP sessions from two FRR clients on its
// own port and reflects each client's VPNv4 route to the other with the
// originator's next hop, label and route target unchanged. It also peers
// over eBGP with an FRR data center gateway (the configuration the README
// shows): the gateway gets the clients' routes with their next hops, and
// the clients get the gateway's.
func TestRouteReflectorReflectsVPNv4(t *testing.T) {
	testbed.RequirePrivileges(t, "/usr/lib/frr/bgpd", "vtysh")
	bin := buildDaemon(t)
	base := 50 + os.Getpid()%50
	a, b, gw := newFRRClient(t, base), newFRRClient(t, base+70), newFRRClient(t, base+140)
	port := freePort(t)
	port = port[strings.LastIndex(port, ":")+1:]

	client := func(c *frrClient, n int) string {
		return fmt.Sprintf(`hostname c%[4]d
route-map SET-RT permit 10
 set extcommunity rt 65000:1
exit
router bgp 65000
 bgp router-id %[1]s
 no bgp default ipv4-unicast
 neighbor %[2]s remote-as 65000
 neighbor %[2]s port %[3]s
 neighbor %[2]s timers 3 9
 neighbor %[2]s timers connect 1
 address-family ipv4 vpn
  neighbor %[2]s activate
  network 10.77.%[4]d.0/24 rd 65000:%[4]d label 10%[4]d route-map SET-RT
 exit-address-family
exit
`, c.addr, c.hostAddr, port, n)
	}
	neighbor := func(c *frrClient) string {
		return fmt.Sprintf(`                    - neighbor-address: %[1]s
                      config: {neighbor-address: %[1]s, peer-as: 65000}
                      timers: {config: {hold-time: 9, keepalive-interval: 3}}
                      transport: {config: {passive-mode: true, local-address: %[2]s}}
                      route-reflector: {config: {route-reflector-client: true}}
`, c.addr, c.hostAddr)
	}
	gateway := fmt.Sprintf(`hostname gw
route-map SET-RT permit 10
 set extcommunity rt 65000:1
exit
router bgp 65001
 bgp router-id %[1]s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor %[2]s remote-as 65000
 neighbor %[2]s timers 3 9
 neighbor %[2]s timers connect 1
 address-family ipv4 vpn
  neighbor %[2]s activate
  network 172.16.5.0/24 rd 65001:5 label 2000 route-map SET-RT
 exit-address-family
exit
`, gw.addr, gw.hostAddr)
	dir := t.TempDir()
	addr := freePort(t)
	cfg := fmt.Sprintf(`role: rr
bgp:
  listen-port: %s
  listen-addresses: [%s, %s]
startup-config:
  network-instances:
    network-instance:
      - name: default
        config: {name: default, type: DEFAULT}
        protocols:
          protocol:
            - identifier: BGP
              name: bgp
              config: {identifier: BGP, name: bgp}
              bgp:
                global:
                  config: {as: 65000, router-id: 10.214.0.1}
                neighbors:
                  neighbor:
`, port, a.hostAddr, b.hostAddr) + neighbor(a) + neighbor(b) + fmt.Sprintf(`                    - neighbor-address: %[1]s
                      config: {neighbor-address: %[1]s, peer-as: 65001}
                      timers: {config: {connect-retry: 1, hold-time: 9, keepalive-interval: 3}}
                      transport: {config: {local-address: %[2]s}}
`, gw.addr, gw.hostAddr)
	d := startDaemon(t, bin, writeConfig(t, dir, addr, cfg))
	c, ctx := dial(t, addr)
	waitReady(t, c, ctx, d)
	a.start(client(a, 1))
	b.start(client(b, 2))
	gw.start(gateway)

	check := func(at, from *frrClient, n int) {
		t.Helper()
		rd, prefix := fmt.Sprintf("65000:%d", n), fmt.Sprintf("10.77.%d.0/24", n)
		if n == 5 {
			rd, prefix = "65001:5", "172.16.5.0/24"
		}
		var paths []frrVPNPath
		waitFor(t, 60*time.Second, fmt.Sprintf("%s:%s at %s", rd, prefix, at.addr), func() bool {
			paths = at.vpnPaths(rd, prefix)
			return len(paths) > 0
		})
		if len(paths) != 1 {
			t.Fatalf("%s:%s at %s: %d paths, want 1", rd, prefix, at.addr, len(paths))
		}
		p := paths[0]
		if len(p.Nexthops) != 1 || p.Nexthops[0].IP != from.addr {
			t.Errorf("%s:%s at %s: next hops %+v, want the originator %s", rd, prefix, at.addr, p.Nexthops, from.addr)
		}
		label := 100 + n
		if n == 5 {
			label = 2000
		}
		if p.RemoteLabel != label {
			t.Errorf("%s:%s at %s: label %d, want %d", rd, prefix, at.addr, p.RemoteLabel, label)
		}
		if !strings.Contains(p.ExtendedCommunity.String, "RT:65000:1") {
			t.Errorf("%s:%s at %s: extended communities %q, want RT:65000:1", rd, prefix, at.addr, p.ExtendedCommunity.String)
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("isthmusd:\n%s\nFRR a:\n%s\nFRR b:\n%s\nFRR gateway:\n%s", d.logs, a.log(), b.log(), gw.log())
		}
	}()
	check(b, a, 1)
	check(a, b, 2)
	check(gw, a, 1)
	check(gw, b, 2)
	check(a, gw, 5)
	check(b, gw, 5)
	d.stop(t)
}
