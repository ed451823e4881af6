package testbed

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMissionTopology(t *testing.T) {
	topo := Mission()
	if got, want := topo.NodesWithRole(RoleHost), []string{"c1", "c2", "d1", "d2"}; !cmp.Equal(got, want) {
		t.Errorf("hosts: got %v, want %v", got, want)
	}
	if got, want := topo.NodesWithRole(RoleRouter), []string{"vpcgw", "core"}; !cmp.Equal(got, want) {
		t.Errorf("routers: got %v, want %v", got, want)
	}
	for node, want := range map[string]string{"c1": "10.10.0.11", "d2": "10.20.0.12", "dcgw": "10.20.0.1", "core": "100.64.0.2"} {
		got, err := topo.UnderlayAddr(node)
		if err != nil || got.String() != want {
			t.Errorf("underlay of %s: got %v, %v; want %s", node, got, err, want)
		}
	}
	for _, name := range []string{"vpcgw", "core"} {
		n, _ := topo.Node(name)
		if n.BGP != nil {
			t.Errorf("router %s must not speak BGP", name)
		}
	}
}

func TestParseRejects(t *testing.T) {
	base := `
name: x
nodes:
  - {name: a, role: host}
  - {name: b, role: router}
links:
  - a: {node: a, interface: eth0, addresses: [10.0.0.1/24]}
    b: {node: b, interface: eth0, addresses: [10.0.0.2/24]}
`
	if _, err := Parse([]byte(base)); err != nil {
		t.Fatalf("base topology: %v", err)
	}
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown role", "role: router}", "role: switch}", "unknown role"},
		{"bad node name", "name: b,", "name: B-1,", "node name"},
		{"unknown node in link", "{node: b, interface", "{node: z, interface", "unknown node"},
		{"bad address", "10.0.0.2/24", "10.0.0.300/24", "address"},
		{"duplicate interface", "{node: b, interface: eth0", "{node: a, interface: eth0", "duplicate interface"},
		{"unknown field", "name: x", "name: x\nfoo: 1", "field foo"},
		{"bgp on plain router", "role: router}", "role: router, bgp: {asn: 1}}", "needs role"},
		{"bridge missing", "addresses: [10.0.0.2/24]}", "bridge: br9}", "no bridge"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(base, tc.from, tc.to, 1)
			if src == base {
				t.Fatalf("replacement %q not found", tc.from)
			}
			_, err := Parse([]byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			if !strings.Contains(tc.name, "unknown field") && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestParseJSON(t *testing.T) {
	src := `{"name": "j", "nodes": [{"name": "a", "role": "host", "loopbacks": ["10.9.9.9/32"]}]}`
	topo, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := topo.UnderlayAddr("a"); a.String() != "10.9.9.9" {
		t.Errorf("underlay: got %v", a)
	}
}
