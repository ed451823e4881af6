package testbed

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanSmall(t *testing.T) {
	topo, err := Parse([]byte(`
name: small
nodes:
  - name: a
    role: host
    routes: [{to: default, via: 10.0.0.1}]
  - name: r
    role: router
    bridges: [{name: br0, addresses: [10.0.0.1/24]}]
links:
  - a: {node: a, interface: eth0, addresses: [10.0.0.2/24]}
    b: {node: r, interface: a, bridge: br0}
    mtu: 1400
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range Plan(topo, "ist-000001-") {
		got = append(got, s.String())
	}
	want := []string{
		"ip netns add ist-000001-a",
		"ip -n ist-000001-a link set lo up",
		"ip netns exec ist-000001-a sysctl -qw net.ipv4.conf.all.rp_filter=0",
		"ip netns exec ist-000001-a sysctl -qw net.ipv4.conf.default.rp_filter=0",
		"ip netns exec ist-000001-a sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
		"ip netns exec ist-000001-a sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
		"ip netns add ist-000001-r",
		"ip -n ist-000001-r link set lo up",
		"ip netns exec ist-000001-r sysctl -qw net.ipv4.conf.all.rp_filter=0",
		"ip netns exec ist-000001-r sysctl -qw net.ipv4.conf.default.rp_filter=0",
		"ip netns exec ist-000001-r sysctl -qw net.ipv4.ip_forward=1",
		"ip netns exec ist-000001-r sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
		"ip netns exec ist-000001-r sysctl -qw net.ipv6.conf.default.disable_ipv6=1",
		"ip -n ist-000001-r link add br0 type bridge",
		"ip -n ist-000001-r addr add 10.0.0.1/24 dev br0",
		"ip -n ist-000001-r link set br0 up",
		"ip link add eth0 netns ist-000001-a type veth peer name a netns ist-000001-r",
		"ip -n ist-000001-a link set eth0 mtu 1400",
		"ip -n ist-000001-a addr add 10.0.0.2/24 dev eth0",
		"ip -n ist-000001-a link set eth0 up",
		"ip -n ist-000001-r link set a mtu 1400",
		"ip -n ist-000001-r link set a master br0",
		"ip -n ist-000001-r link set a up",
		"ip -n ist-000001-a route add default via 10.0.0.1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

func TestPlanMissionNamespacesFirst(t *testing.T) {
	topo := Mission()
	steps := Plan(topo, "ist-abcdef-")
	seen := map[string]bool{}
	for _, s := range steps {
		if !strings.HasPrefix(s.Namespace, "ist-abcdef-") {
			t.Errorf("step %q targets %q outside the run", s, s.Namespace)
		}
		if s.Kind == StepNamespace {
			seen[s.Namespace] = true
			continue
		}
		if !seen[s.Namespace] {
			t.Errorf("step %q runs before its namespace is created", s)
		}
		for _, a := range s.Argv {
			if strings.HasPrefix(a, "ist-") && !seen[a] {
				t.Errorf("step %q names %s before it is created", s, a)
			}
		}
	}
	if len(seen) != len(topo.Nodes) {
		t.Errorf("created %d namespaces, want %d", len(seen), len(topo.Nodes))
	}
}

func TestPrefix(t *testing.T) {
	a, b := NewPrefix(), NewPrefix()
	if !ValidPrefix(a) || !ValidPrefix(b) || a == b {
		t.Errorf("prefixes %q, %q: want two distinct valid ones", a, b)
	}
	for _, bad := range []string{"ist-", "ist-xyz123-", "foo-abcdef-", "ist-abcdef"} {
		if ValidPrefix(bad) {
			t.Errorf("ValidPrefix(%q) = true", bad)
		}
	}
}

func TestFRRConfigMission(t *testing.T) {
	conf, err := FRRConfig(Mission(), "dcgw")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"router bgp 65000\n",
		" neighbor 10.10.0.11 remote-as 65000\n",
		" neighbor 10.20.0.12 update-source 10.20.0.1\n",
		" address-family ipv4 vpn\n",
		" bgp graceful-restart\n",
		"  neighbor 10.10.0.12 route-reflector-client\n",
		"  network 192.168.200.0/24 rd 65000:200 label 200 route-map SET-RT-1\n",
		"route-map SET-RT-1 permit 10\n set extcommunity rt 65000:100\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Index(conf, "route-map SET-RT-1 permit") > strings.Index(conf, "router bgp") {
		t.Errorf("route map must be defined before the router block:\n%s", conf)
	}
	if _, err := FRRConfig(Mission(), "core"); err == nil {
		t.Error("FRRConfig of a plain router: want error")
	}
}
