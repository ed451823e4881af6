package dataplane

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
)

var nsSeq atomic.Int32

// testNS is a named network namespace that the test created and deletes.
type testNS struct{ name string }

func newNS(t testing.TB, role string) *testNS {
	t.Helper()
	n := &testNS{name: fmt.Sprintf("ist%d-%d-%s", os.Getpid()%100000, nsSeq.Add(1), role)}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("add netns %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.name).Run() })
	n.ip(t, "link", "set", "lo", "up")
	// IPv4 only: no IPv6 neighbor discovery chatter on the links.
	if out, err := n.cmd("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("disable ipv6 in %s: %v: %s", n.name, err, out)
	}
	return n
}

// ip runs `ip -n <ns> args...`.
func (n *testNS) ip(t testing.TB, args ...string) {
	t.Helper()
	args = append([]string{"-n", n.name}, args...)
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// cmd returns a command that runs inside the namespace.
func (n *testNS) cmd(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// do runs fn on a fresh OS thread inside the namespace. The thread is
// never returned to the scheduler's pool.
func (n *testNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(n.name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// vethBetween creates a veth pair with fixed MACs between two namespaces.
func vethBetween(t testing.TB, a *testNS, aName string, aMAC net.HardwareAddr, b *testNS, bName string, bMAC net.HardwareAddr) {
	t.Helper()
	out, err := exec.Command("ip", "link", "add", "name", aName, "address", aMAC.String(), "netns", a.name,
		"type", "veth", "peer", "name", bName, "address", bMAC.String(), "netns", b.name).CombinedOutput()
	if err != nil {
		t.Fatalf("add veth %s/%s: %v: %s", aName, bName, err, out)
	}
	a.ip(t, "link", "set", aName, "up")
	b.ip(t, "link", "set", bName, "up")
}

// testPod is a pod namespace behind a host-side veth.
type testPod struct {
	ns     *testNS
	hostIf string
	mac    net.HardwareAddr // pod end
	addr   netip.Addr
}

// addPod creates a pod namespace with one /32 address, a default route to
// a link-local gateway answered by a static neighbor entry (the host end's
// MAC), and an MTU that leaves room for the encapsulation.
func addPod(t testing.TB, host *testNS, hostIf string, id byte, addr netip.Addr, mtu int) *testPod {
	t.Helper()
	p := &testPod{ns: newNS(t, "pod"), hostIf: hostIf, mac: net.HardwareAddr{0x0a, 0, 0, 0, id, 2}, addr: addr}
	hostMAC := net.HardwareAddr{0x0a, 0, 0, 0, id, 1}
	vethBetween(t, host, hostIf, hostMAC, p.ns, "eth0", p.mac)
	p.ns.ip(t, "link", "set", "eth0", "mtu", fmt.Sprint(mtu))
	p.ns.ip(t, "addr", "add", addr.String()+"/32", "dev", "eth0")
	p.ns.ip(t, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	p.ns.ip(t, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	p.ns.ip(t, "neigh", "add", "169.254.1.1", "lladdr", hostMAC.String(), "dev", "eth0", "nud", "permanent")
	return p
}

// ping pings dst from the pod and returns ping's output.
func (p *testPod) ping(dst netip.Addr, args ...string) (string, error) {
	var out bytes.Buffer
	c := p.ns.cmd("ping", append(args, dst.String())...)
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	return out.String(), err
}
