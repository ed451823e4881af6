package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// runCmd runs a command in the test's own namespace.
func runCmd(ctx context.Context, argv ...string) ([]byte, error) {
	return exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
}

func TestMissionUnderlayReachability(t *testing.T) {
	tb := NewTestbed(t, Mission())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	l, err := FindLeftovers(tb.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Namespaces) != len(tb.Topology().Nodes) {
		t.Fatalf("namespaces: got %v, want one per node", l.Namespaces)
	}
	// Hosts reach each other across the VPC gateway, the core and the DC
	// gateway by plain IP routing.
	for _, p := range [][2]string{{"c1", "d1"}, {"d1", "c1"}, {"c2", "d2"}, {"c1", "c2"}, {"d1", "d2"}} {
		to, err := tb.Topology().UnderlayAddr(p[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := tb.Ping(ctx, p[0], to.String(), 3); err != nil {
			t.Errorf("ping %s → %s: %v", p[0], p[1], err)
		}
	}
	// The path from c1 to d1 crosses exactly vpcgw, core and dcgw.
	out, err := tb.Exec(ctx, "c1", "ip", "route", "get", "10.20.0.11")
	if err != nil || !strings.Contains(string(out), "via 10.10.0.1") {
		t.Errorf("c1 route to d1: %q, %v", out, err)
	}
	st, err := tb.PingFlow(ctx, "c1", PingOptions{To: "10.20.0.11", Count: 1, TTL: 3, Timeout: time.Second})
	if err != nil || st.Received != 0 {
		t.Errorf("ping with ttl 3 reached d1 through fewer than three routers: %+v, %v", st, err)
	}
	st, err = tb.PingFlow(ctx, "c1", PingOptions{To: "10.20.0.11", Count: 1, TTL: 4})
	if err != nil || st.Received != 1 {
		t.Errorf("ping with ttl 4 did not reach d1 through three routers: %+v, %v", st, err)
	}
	// The plain routers forward, and know no tenant or pod prefixes.
	for _, r := range []string{"vpcgw", "core"} {
		out, err := tb.Exec(ctx, r, "sysctl", "-n", "net.ipv4.ip_forward")
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s ip_forward: %q, %v", r, out, err)
		}
		routes, err := tb.Exec(ctx, r, "ip", "-4", "route", "show")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(routes)), "\n") {
			if !strings.HasPrefix(line, "10.10.0.0/24") && !strings.HasPrefix(line, "10.20.0.0/24") && !strings.HasPrefix(line, "100.64.0.") {
				t.Errorf("%s has a route outside the underlay: %q", r, line)
			}
		}
	}
	// Nothing of the run is visible in the caller's namespace.
	out, err = runCmd(ctx, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), tb.Prefix()) {
		t.Errorf("run interfaces leaked into the root namespace: %s", out)
	}
}

// TestFRRRouteReflector starts FRR on dcgw as the topology describes it,
// and FRR stand-ins for isthmusd on c1 and d1, then checks that dcgw
// reflects d1's VPNv4 route to c1 with its next hop unchanged and that its
// own data-center prefix reaches c1.
func TestFRRRouteReflector(t *testing.T) {
	RequirePrivileges(t, frrBGPd, frrZebra, vtyshBin)
	topo := Mission()
	topo.Tenants = nil // c1 and d1 turn into FRR stand-ins, no longer hosts
	for i := range topo.Nodes {
		n := &topo.Nodes[i]
		switch n.Name {
		case "c1":
			n.Role, n.BGP = RoleBGPRouter, &BGP{ASN: 65000, Neighbors: []Neighbor{{Node: "dcgw"}}}
		case "d1":
			n.Role, n.BGP = RoleBGPRouter, &BGP{ASN: 65000, Neighbors: []Neighbor{{Node: "dcgw"}},
				Networks: []VPNNetwork{{Prefix: "10.99.1.0/24", RD: "65000:1", Label: 101, RTs: []string{"65000:100"}}}}
		}
	}
	tb := NewTestbed(t, topo)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	dcgw, err := tb.StartFRR(ctx, "dcgw")
	if err != nil {
		t.Fatal(err)
	}
	out, err := dcgw.Vtysh(ctx, "show version")
	if err != nil || !strings.Contains(string(out), "FRRouting") {
		t.Fatalf("vtysh show version on dcgw: %q, %v", out, err)
	}
	c1, err := tb.StartFRR(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	d1, err := tb.StartFRR(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if err := dcgw.WaitEstablished(ctx, "10.10.0.11", "10.20.0.11"); err != nil {
		t.Fatal(err)
	}
	peers, err := dcgw.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.10.0.12", "10.20.0.12"} {
		if peers[p] == "Established" || peers[p] == "" {
			t.Errorf("dcgw peer %s (no daemon behind it): state %q", p, peers[p])
		}
	}
	r, err := c1.WaitVPNRoute(ctx, "65000:1", "10.99.1.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if r.Nexthop != "10.20.0.11" {
		t.Errorf("reflected route next hop: got %s, want d1's underlay 10.20.0.11", r.Nexthop)
	}
	r, err = c1.WaitVPNRoute(ctx, "65000:200", "192.168.200.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if r.Nexthop != "10.20.0.1" {
		t.Errorf("dcgw prefix next hop: got %s, want 10.20.0.1", r.Nexthop)
	}
	if _, err := d1.WaitVPNRoute(ctx, "65000:200", "192.168.200.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := d1.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Once d1 is gone its route is withdrawn everywhere.
	err = poll(ctx, func() (bool, error) {
		routes, err := c1.VPNRoutes(ctx)
		for _, r := range routes {
			if r.Prefix == "10.99.1.0/24" {
				return false, err
			}
		}
		return err == nil, err
	})
	if err != nil {
		t.Errorf("d1's route not withdrawn from c1: %v", err)
	}
}

func TestNewNS(t *testing.T) {
	a, b := NewNS(t), NewNS(t)
	ctx := context.Background()
	if out, err := runCmd(ctx, "ip", "link", "add", "x0", "netns", a.Name, "type", "veth", "peer", "name", "x1", "netns", b.Name); err != nil {
		t.Fatalf("add veth: %v: %s", err, out)
	}
	for _, c := range [][]string{
		{"ip", "-n", a.Name, "addr", "add", "10.0.0.1/30", "dev", "x0"},
		{"ip", "-n", a.Name, "link", "set", "x0", "up"},
		{"ip", "-n", b.Name, "addr", "add", "10.0.0.2/30", "dev", "x1"},
		{"ip", "-n", b.Name, "link", "set", "x1", "up"},
	} {
		if out, err := runCmd(ctx, c...); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	if st, err := pingFrom(ctx, a.Path(), PingOptions{To: "10.0.0.2", Count: 2}); err != nil || st.Received != 2 {
		t.Fatalf("ping a → b: %+v, %v", st, err)
	}
	// Do runs Go code inside the namespace on a locked thread.
	var links []string
	err := b.Do(func(_ ns.NetNS) error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			links = append(links, i.Name)
		}
		return err
	})
	if err != nil || fmt.Sprint(links) != "[lo x1]" {
		t.Errorf("interfaces seen inside b: %v, %v", links, err)
	}
}

func TestDownIsIdempotent(t *testing.T) {
	RequirePrivileges(t)
	ctx := context.Background()
	topo, err := Parse([]byte("name: tiny\nnodes:\n  - {name: a, role: host, loopbacks: [10.9.0.1/32]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tb, err := Up(ctx, topo, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Start(ctx, "a", "sleeper", "sleep", "600"); err != nil {
		t.Fatal(err)
	}
	if err := Down(ctx, nil, dir); err != nil {
		t.Fatal(err)
	}
	if err := Down(ctx, nil, dir); err != nil {
		t.Fatalf("second down: %v", err)
	}
	if err := tb.Down(ctx); err != nil {
		t.Fatalf("down after down: %v", err)
	}
	assertNoLeftovers(t, tb.Prefix())
	if _, err := os.Stat(dir + "/" + StateFile); !os.IsNotExist(err) {
		t.Errorf("state file left after down: %v", err)
	}
}

func assertNoLeftovers(t *testing.T, prefix string) {
	t.Helper()
	l, err := FindLeftovers(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Empty() {
		t.Errorf("left after down: %+v", l)
	}
}

// TestHostMountsDown starts a process that enters only the node's network
// namespace and mounts a bpffs under the run directory, as isthmusd's
// dataplane does; Down must unmount it and stop the process.
func TestHostMountsDown(t *testing.T) {
	RequirePrivileges(t, "nsenter")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := Parse([]byte("name: tiny\nnodes:\n  - {name: a, role: host, loopbacks: [10.9.0.1/32]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Up(ctx, topo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tb.RemoveDir() })
	pin := tb.Dir() + "/bpf/a"
	p, err := tb.StartWith(ctx, "a", "pinner", StartOptions{HostMounts: true}, "sh", "-c",
		"mkdir -p "+pin+" && mount -t bpf bpf "+pin+" && ip -o addr show lo > "+tb.Dir()+"/addrs && exec sleep 600")
	if err != nil {
		t.Fatal(err)
	}
	err = poll(ctx, func() (bool, error) {
		l, err := FindLeftovers(tb.Prefix())
		return len(l.Mounts) == 1 && l.Mounts[0] == pin, err
	})
	if err != nil {
		t.Fatalf("bpffs not mounted at %s: %v; log: %s", pin, err, p.Tail(5))
	}
	addrs, err := os.ReadFile(tb.Dir() + "/addrs")
	if err != nil || !strings.Contains(string(addrs), "10.9.0.1") {
		t.Errorf("process did not run in the node's network namespace: %q, %v", addrs, err)
	}
	if err := Down(ctx, nil, tb.Dir()); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, tb.Prefix())
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Error("process still running after down")
	}
}
