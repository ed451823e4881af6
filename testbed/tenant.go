package testbed

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Tenant is a VPN that spans the hosts: one VRF on each host that has a pod
// address pool for it.
type Tenant struct {
	// Name is the VRF name on every host, and the CNI network name.
	Name string `yaml:"name" json:"name"`
	// RouteTarget is imported and exported by every host's VRF ("ASN:N").
	RouteTarget string `yaml:"route_target" json:"route_target"`
	// Encapsulation is MPLS_OVER_UDP (default) or MPLS_OVER_MPLS.
	Encapsulation string `yaml:"encapsulation,omitempty" json:"encapsulation,omitempty"`
	// Pools maps a host node to its pod address pool in this tenant.
	Pools map[string]string `yaml:"pools" json:"pools"`
}

// validateTenants checks tenant names, route targets and pools; called by
// Validate.
func (t *Topology) validateTenants() error {
	seen := map[string]bool{}
	for i, tn := range t.Tenants {
		if !nodeName.MatchString(tn.Name) || seen[tn.Name] || tn.Name == "default" {
			return fmt.Errorf("tenant %d: bad or duplicate name %q", i, tn.Name)
		}
		seen[tn.Name] = true
		if _, _, ok := strings.Cut(tn.RouteTarget, ":"); !ok {
			return fmt.Errorf("tenant %s: route target %q is not ASN:N", tn.Name, tn.RouteTarget)
		}
		switch tn.Encapsulation {
		case "", "MPLS_OVER_UDP", "MPLS_OVER_MPLS":
		default:
			return fmt.Errorf("tenant %s: unknown encapsulation %q", tn.Name, tn.Encapsulation)
		}
		for node, pool := range tn.Pools {
			if n, ok := t.Node(node); !ok || n.Role != RoleHost {
				return fmt.Errorf("tenant %s: pool on %q, which is not a host", tn.Name, node)
			}
			if _, err := netip.ParsePrefix(pool); err != nil {
				return fmt.Errorf("tenant %s pool on %s: %w", tn.Name, node, err)
			}
		}
	}
	return nil
}

// BGPPeer is a BGP session a host opens.
type BGPPeer struct {
	// Address is the peer's address.
	Address netip.Addr
	// ASN is the peer's AS, which the host shares (iBGP).
	ASN uint32
}

// HostPeers returns the sessions a host opens: one to every bgp-router that
// lists the host as a neighbor, in the router's AS.
func (t *Topology) HostPeers(host string) ([]BGPPeer, error) {
	var peers []BGPPeer
	for _, n := range t.Nodes {
		if n.BGP == nil {
			continue
		}
		for _, nb := range n.BGP.Neighbors {
			if nb.Node != host {
				continue
			}
			addr, err := t.UnderlayAddr(n.Name)
			if err != nil {
				return nil, err
			}
			asn := nb.ASN
			if asn == 0 {
				asn = n.BGP.ASN
			}
			peers = append(peers, BGPPeer{Address: addr, ASN: asn})
		}
	}
	return peers, nil
}

// setUpdate is one update of a gnmic set request file.
type setUpdate struct {
	Path     string         `yaml:"path"`
	Encoding string         `yaml:"encoding"`
	Value    map[string]any `yaml:"value"`
}

// HostSetRequest renders the gnmic set request file (`gnmic set
// --request-file`) that configures isthmusd on a host in one transaction:
// the underlay interface and tunnel source, BGP with graceful restart and
// a VPNv4 session to each router that serves the host, MPLS-over-MPLS
// transport labels when the host has one, and a VRF for each tenant that
// has a pool on the host (RD "<underlay>:<tenant number>").
func HostSetRequest(t *Topology, host string) ([]byte, error) {
	n, ok := t.Node(host)
	if !ok || n.Role != RoleHost {
		return nil, fmt.Errorf("render host config: %q is not a host", host)
	}
	src, err := t.UnderlayAddr(host)
	if err != nil {
		return nil, fmt.Errorf("render host config for %s: %w", host, err)
	}
	underlayIf, err := t.UnderlayInterface(host)
	if err != nil {
		return nil, fmt.Errorf("render host config for %s: %w", host, err)
	}
	peers, err := t.HostPeers(host)
	if err != nil {
		return nil, fmt.Errorf("render host config for %s: %w", host, err)
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("render host config for %s: no bgp-router lists it as a neighbor", host)
	}
	const bgp = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]"
	u := []setUpdate{
		{Path: "/interfaces/interface[name=" + underlayIf + "]/config", Value: map[string]any{"name": underlayIf, "type": "UNDERLAY"}},
		{Path: "/tunnel/config", Value: map[string]any{"source-address": src.String(), "underlay-interface": underlayIf}},
		{Path: "/network-instances/network-instance[name=default]/config", Value: map[string]any{"name": "default", "type": "DEFAULT"}},
		{Path: bgp + "/config", Value: map[string]any{"identifier": "BGP", "name": "bgp"}},
		{Path: bgp + "/bgp/global/config", Value: map[string]any{"as": peers[0].ASN, "router-id": src.String()}},
		// Peers keep a restarting host's routes (RFC 4724), so a daemon
		// restart loses no traffic; a host that stays away is withdrawn
		// after hold time + restart time.
		{Path: bgp + "/bgp/global/graceful-restart/config", Value: map[string]any{"enabled": true, "restart-time": 10, "stale-routes-time": 30}},
	}
	for _, p := range peers {
		nb := bgp + "/bgp/neighbors/neighbor[neighbor-address=" + p.Address.String() + "]"
		u = append(u,
			setUpdate{Path: nb + "/config", Value: map[string]any{"neighbor-address": p.Address.String(), "peer-as": p.ASN}},
			setUpdate{Path: nb + "/timers/config", Value: map[string]any{"connect-retry": 2, "hold-time": 9, "keepalive-interval": 3}},
			setUpdate{Path: nb + "/transport/config", Value: map[string]any{"local-address": src.String()}},
			setUpdate{Path: nb + "/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/config",
				Value: map[string]any{"afi-safi-name": "L3VPN_IPV4_UNICAST", "enabled": true}},
		)
	}
	if n.TransportLabel != 0 {
		u = append(u, setUpdate{Path: "/tunnel/config", Value: map[string]any{"transport-label": n.TransportLabel}})
		peers, err := t.SegmentPeers(host)
		if err != nil {
			return nil, fmt.Errorf("render host config for %s: %w", host, err)
		}
		for _, p := range peers {
			pn, _ := t.Node(p) // SegmentPeers returns nodes
			addr, _ := t.UnderlayAddr(p)
			u = append(u, setUpdate{
				Path:  "/tunnel/neighbors/neighbor[address=" + addr.String() + "]/config",
				Value: map[string]any{"address": addr.String(), "transport-label": pn.TransportLabel},
			})
		}
	}
	for i, tn := range t.Tenants {
		pool, ok := tn.Pools[host]
		if !ok {
			continue
		}
		vrf := "/network-instances/network-instance[name=" + tn.Name + "]"
		encap := tn.Encapsulation
		if encap == "" {
			encap = "MPLS_OVER_UDP"
		}
		u = append(u,
			setUpdate{Path: vrf + "/config", Value: map[string]any{
				"name": tn.Name, "type": "L3VRF", "route-distinguisher": fmt.Sprintf("%s:%d", src, i+1),
				"import-route-target": []string{tn.RouteTarget}, "export-route-target": []string{tn.RouteTarget},
				"encapsulation": encap,
			}},
			setUpdate{Path: vrf + "/address-pools/address-pool[prefix=" + pool + "]/config", Value: map[string]any{"prefix": pool}},
		)
	}
	for i := range u {
		u[i].Encoding = "json_ietf"
	}
	out, err := yaml.Marshal(map[string][]setUpdate{"updates": u})
	if err != nil {
		return nil, fmt.Errorf("render host config for %s: %w", host, err)
	}
	return out, nil
}

// TenantNames returns the names of the tenants with a pool on host.
func (t *Topology) TenantNames(host string) []string {
	var names []string
	for _, tn := range t.Tenants {
		if _, ok := tn.Pools[host]; ok {
			names = append(names, tn.Name)
		}
	}
	return slices.Clip(names)
}
