package testbed

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role says what a node does in the topology.
type Role string

// The roles a node can have.
const (
	// RoleHost is a server that runs isthmusd and hosts pods (c1, c2, d1, d2).
	RoleHost Role = "host"
	// RoleRouter is a plain IP router: IP forwarding and static routes only,
	// no MPLS, no BGP, no tenant routes (vpcgw, core).
	RoleRouter Role = "router"
	// RoleBGPRouter is a router that also runs FRR bgpd, here as VPNv4 route
	// reflector and data-center gateway (dcgw).
	RoleBGPRouter Role = "bgp-router"
)

// Topology is a declarative description of namespaces, links and routes.
type Topology struct {
	// Name names the topology, for logs and status.
	Name string `yaml:"name" json:"name"`
	// Nodes are the namespaces, in the order they are built.
	Nodes []Node `yaml:"nodes" json:"nodes"`
	// Links are veth pairs between two nodes.
	Links []Link `yaml:"links" json:"links"`
	// Tenants are the VPNs configured on the hosts.
	Tenants []Tenant `yaml:"tenants,omitempty" json:"tenants,omitempty"`
}

// Node is one network namespace.
type Node struct {
	// Name is short and unique in the topology ("c1", "vpcgw").
	Name string `yaml:"name" json:"name"`
	// Role says what runs in the node.
	Role Role `yaml:"role" json:"role"`
	// Site is where the node stands: "cloud", "provider" or "dc".
	Site string `yaml:"site,omitempty" json:"site,omitempty"`
	// Underlay is the address other nodes reach this one at (tunnel
	// endpoint, BGP peering address). When empty, the first address of the
	// node's first interface or bridge is used.
	Underlay string `yaml:"underlay,omitempty" json:"underlay,omitempty"`
	// Loopbacks are addresses (with prefix length) added to lo.
	Loopbacks []string `yaml:"loopbacks,omitempty" json:"loopbacks,omitempty"`
	// Bridges are Linux bridges inside the node; link ends can join them.
	Bridges []Bridge `yaml:"bridges,omitempty" json:"bridges,omitempty"`
	// Routes are static routes added once every link is up.
	Routes []Route `yaml:"routes,omitempty" json:"routes,omitempty"`
	// Sysctls are set in the node's namespace; routers get
	// net.ipv4.ip_forward=1 without asking.
	Sysctls map[string]string `yaml:"sysctls,omitempty" json:"sysctls,omitempty"`
	// BGP configures FRR bgpd on a bgp-router node.
	BGP *BGP `yaml:"bgp,omitempty" json:"bgp,omitempty"`
	// TransportLabel is the MPLS transport label a host accepts for MPLS
	// over MPLS from hosts on its L2 segment; 0 means none.
	TransportLabel uint32 `yaml:"transport_label,omitempty" json:"transport_label,omitempty"`
}

// Bridge is a Linux bridge inside a node: an L2 segment its member link
// ends share.
type Bridge struct {
	// Name is the bridge's interface name in the node.
	Name string `yaml:"name" json:"name"`
	// Addresses are assigned to the bridge, with prefix length.
	Addresses []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`
}

// Route is a static IPv4 route.
type Route struct {
	// To is the destination prefix, or "default".
	To string `yaml:"to" json:"to"`
	// Via is the next-hop address.
	Via string `yaml:"via" json:"via"`
}

// Link is a veth pair with one end in each of two nodes.
type Link struct {
	// A and B are the two ends.
	A End `yaml:"a" json:"a"`
	B End `yaml:"b" json:"b"`
	// MTU of both ends; 0 keeps the kernel default.
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// End is one end of a link.
type End struct {
	// Node names the node this end lives in.
	Node string `yaml:"node" json:"node"`
	// Interface is the end's name inside the node.
	Interface string `yaml:"interface" json:"interface"`
	// Addresses are assigned to the end, with prefix length.
	Addresses []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`
	// Bridge, when set, makes the end a port of that bridge in the node.
	Bridge string `yaml:"bridge,omitempty" json:"bridge,omitempty"`
}

// BGP is the FRR configuration of a bgp-router node.
type BGP struct {
	// ASN is the local autonomous system.
	ASN uint32 `yaml:"asn" json:"asn"`
	// RouterID defaults to the node's underlay address.
	RouterID string `yaml:"router_id,omitempty" json:"router_id,omitempty"`
	// GracefulRestart keeps the routes of a peer that restarts, for the
	// restart time it advertised (RFC 4724), also when it closed with a
	// NOTIFICATION (RFC 8538).
	GracefulRestart bool `yaml:"graceful_restart,omitempty" json:"graceful_restart,omitempty"`
	// RouteReflector makes every iBGP neighbor a VPNv4 route-reflector client.
	RouteReflector bool `yaml:"route_reflector,omitempty" json:"route_reflector,omitempty"`
	// Neighbors are VPNv4 peers.
	Neighbors []Neighbor `yaml:"neighbors,omitempty" json:"neighbors,omitempty"`
	// Networks are VPNv4 prefixes the router originates itself.
	Networks []VPNNetwork `yaml:"networks,omitempty" json:"networks,omitempty"`
}

// Neighbor is a BGP peer of an FRR node.
type Neighbor struct {
	// Node names a topology node; its underlay address is the peer address.
	Node string `yaml:"node,omitempty" json:"node,omitempty"`
	// Address is the peer address when the peer is not a node.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// ASN is the peer's AS; 0 means the local AS (iBGP).
	ASN uint32 `yaml:"asn,omitempty" json:"asn,omitempty"`
}

// VPNNetwork is a VPNv4 prefix originated by FRR.
type VPNNetwork struct {
	// Prefix is the IPv4 prefix.
	Prefix string `yaml:"prefix" json:"prefix"`
	// RD is the route distinguisher, "ASN:N" or "IP:N".
	RD string `yaml:"rd" json:"rd"`
	// Label is the VPN label advertised with the prefix.
	Label uint32 `yaml:"label" json:"label"`
	// RTs are the route targets attached to the prefix.
	RTs []string `yaml:"rts" json:"rts"`
}

//go:embed topologies/mission.yaml
var missionYAML []byte

// Mission returns the default topology: c1, c2 in a cloud VPC behind vpcgw,
// a provider core router, and dcgw with d1, d2 in the data center.
func Mission() *Topology {
	t, err := Parse(missionYAML)
	if err != nil {
		panic(fmt.Sprintf("parse embedded mission topology: %v", err))
	}
	return t
}

// Load reads and validates a topology file (YAML, of which JSON is a subset).
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return t, nil
}

// Parse decodes and validates a topology; unknown fields are errors.
func Parse(data []byte) (*Topology, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	var t Topology
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("decode topology: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid topology")

var nodeName = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)
var ifName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$`)

// Validate checks names, addresses and references.
func (t *Topology) Validate() error {
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if len(t.Nodes) == 0 {
		return invalid("no nodes")
	}
	ifaces := map[string]map[string]bool{} // node → interface names
	bridges := map[string]map[string]bool{}
	for _, n := range t.Nodes {
		if !nodeName.MatchString(n.Name) {
			return invalid("node name %q: want 1-8 lowercase letters or digits", n.Name)
		}
		if ifaces[n.Name] != nil {
			return invalid("node %q defined twice", n.Name)
		}
		ifaces[n.Name] = map[string]bool{"lo": true}
		bridges[n.Name] = map[string]bool{}
		switch n.Role {
		case RoleHost, RoleRouter:
			if n.TransportLabel != 0 && (n.Role != RoleHost || n.TransportLabel < 16 || n.TransportLabel >= 1<<20) {
				return invalid("node %q: transport label %d needs a host and 16 <= label < 2^20", n.Name, n.TransportLabel)
			}
			if n.BGP != nil {
				return invalid("node %q: bgp needs role %q", n.Name, RoleBGPRouter)
			}
		case RoleBGPRouter:
			if n.BGP == nil {
				return invalid("node %q: role %q needs bgp", n.Name, n.Role)
			}
		default:
			return invalid("node %q: unknown role %q", n.Name, n.Role)
		}
		for _, a := range n.Loopbacks {
			if _, err := netip.ParsePrefix(a); err != nil {
				return invalid("node %q loopback %q: %v", n.Name, a, err)
			}
		}
		for _, b := range n.Bridges {
			if !ifName.MatchString(b.Name) || ifaces[n.Name][b.Name] {
				return invalid("node %q: bad or duplicate bridge name %q", n.Name, b.Name)
			}
			ifaces[n.Name][b.Name] = true
			bridges[n.Name][b.Name] = true
			for _, a := range b.Addresses {
				if _, err := netip.ParsePrefix(a); err != nil {
					return invalid("node %q bridge %s address %q: %v", n.Name, b.Name, a, err)
				}
			}
		}
	}
	for i, l := range t.Links {
		for _, e := range []End{l.A, l.B} {
			names, ok := ifaces[e.Node]
			if !ok {
				return invalid("link %d: unknown node %q", i, e.Node)
			}
			if !ifName.MatchString(e.Interface) || names[e.Interface] {
				return invalid("link %d: bad or duplicate interface %q in node %q", i, e.Interface, e.Node)
			}
			names[e.Interface] = true
			if e.Bridge != "" && !bridges[e.Node][e.Bridge] {
				return invalid("link %d: node %q has no bridge %q", i, e.Node, e.Bridge)
			}
			for _, a := range e.Addresses {
				if _, err := netip.ParsePrefix(a); err != nil {
					return invalid("link %d %s:%s address %q: %v", i, e.Node, e.Interface, a, err)
				}
			}
		}
		if l.A.Node == l.B.Node {
			return invalid("link %d: both ends in node %q", i, l.A.Node)
		}
	}
	for _, n := range t.Nodes {
		for _, r := range n.Routes {
			if r.To != "default" {
				if _, err := netip.ParsePrefix(r.To); err != nil {
					return invalid("node %q route to %q: %v", n.Name, r.To, err)
				}
			}
			if _, err := netip.ParseAddr(r.Via); err != nil {
				return invalid("node %q route via %q: %v", n.Name, r.Via, err)
			}
		}
		if _, err := t.UnderlayAddr(n.Name); err != nil {
			return invalid("node %q: %v", n.Name, err)
		}
		if n.BGP != nil {
			if err := t.validateBGP(n); err != nil {
				return invalid("node %q bgp: %v", n.Name, err)
			}
		}
	}
	if err := t.validateTenants(); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func (t *Topology) validateBGP(n Node) error {
	if n.BGP.ASN == 0 {
		return errors.New("asn is required")
	}
	for _, nb := range n.BGP.Neighbors {
		if _, err := t.NeighborAddr(nb); err != nil {
			return err
		}
	}
	for _, nw := range n.BGP.Networks {
		if _, err := netip.ParsePrefix(nw.Prefix); err != nil {
			return fmt.Errorf("network %q: %w", nw.Prefix, err)
		}
		if !strings.Contains(nw.RD, ":") || len(nw.RTs) == 0 {
			return fmt.Errorf("network %q needs rd and rts", nw.Prefix)
		}
	}
	return nil
}

// Node returns the node called name.
func (t *Topology) Node(name string) (Node, bool) {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// NodesWithRole returns the names of the nodes with role r, in file order.
func (t *Topology) NodesWithRole(r Role) []string {
	var names []string
	for _, n := range t.Nodes {
		if n.Role == r {
			names = append(names, n.Name)
		}
	}
	return names
}

// UnderlayAddr returns the address other nodes reach node at: its Underlay
// field, else its first loopback address, else the first address of its
// first bridge or link end.
func (t *Topology) UnderlayAddr(node string) (netip.Addr, error) {
	n, ok := t.Node(node)
	if !ok {
		return netip.Addr{}, fmt.Errorf("unknown node %q", node)
	}
	if n.Underlay != "" {
		a, err := netip.ParseAddr(n.Underlay)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("underlay %q: %w", n.Underlay, err)
		}
		return a, nil
	}
	first := slices.Clone(n.Loopbacks)
	for _, b := range n.Bridges {
		first = append(first, b.Addresses...)
	}
	for _, l := range t.Links {
		for _, e := range []End{l.A, l.B} {
			if e.Node == node {
				first = append(first, e.Addresses...)
			}
		}
	}
	if len(first) == 0 {
		return netip.Addr{}, errors.New("no address to use as underlay")
	}
	p, err := netip.ParsePrefix(first[0])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("underlay: %w", err)
	}
	return p.Addr(), nil
}

// UnderlayInterface returns the name of node's link end that carries its
// underlay address.
func (t *Topology) UnderlayInterface(node string) (string, error) {
	addr, err := t.UnderlayAddr(node)
	if err != nil {
		return "", err
	}
	for _, l := range t.Links {
		for _, e := range []End{l.A, l.B} {
			if e.Node != node {
				continue
			}
			for _, a := range e.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil && p.Addr() == addr {
					return e.Interface, nil
				}
			}
		}
	}
	return "", fmt.Errorf("node %q: no link carries underlay address %s", node, addr)
}

// SegmentPeers returns the other hosts with a transport label whose
// underlay address is on the same subnet as host's: the hosts it can reach
// with MPLS over MPLS.
func (t *Topology) SegmentPeers(host string) ([]string, error) {
	n, ok := t.Node(host)
	if !ok || n.TransportLabel == 0 {
		return nil, nil
	}
	subnet, err := t.underlaySubnet(host)
	if err != nil {
		return nil, err
	}
	var peers []string
	for _, o := range t.Nodes {
		if o.Name == host || o.Role != RoleHost || o.TransportLabel == 0 {
			continue
		}
		addr, err := t.UnderlayAddr(o.Name)
		if err != nil {
			return nil, err
		}
		if subnet.Contains(addr) {
			peers = append(peers, o.Name)
		}
	}
	return peers, nil
}

// underlaySubnet returns the prefix of the link address that carries
// node's underlay address.
func (t *Topology) underlaySubnet(node string) (netip.Prefix, error) {
	addr, err := t.UnderlayAddr(node)
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, l := range t.Links {
		for _, e := range []End{l.A, l.B} {
			for _, a := range e.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil && e.Node == node && p.Addr() == addr {
					return p.Masked(), nil
				}
			}
		}
	}
	return netip.Prefix{}, fmt.Errorf("node %q: no link carries underlay address %s", node, addr)
}

// NeighborAddr resolves a BGP neighbor to its peer address.
func (t *Topology) NeighborAddr(nb Neighbor) (netip.Addr, error) {
	switch {
	case nb.Node != "" && nb.Address != "":
		return netip.Addr{}, fmt.Errorf("neighbor %q: set node or address, not both", nb.Node)
	case nb.Node != "":
		return t.UnderlayAddr(nb.Node)
	default:
		a, err := netip.ParseAddr(nb.Address)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("neighbor address %q: %w", nb.Address, err)
		}
		return a, nil
	}
}
