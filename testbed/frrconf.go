package testbed

import (
	"fmt"
	"strings"
)

// FRRConfig renders the bgpd configuration of a bgp-router node: one BGP
// instance (FRR 8.4 carries VPNv4 in its default instance), every neighbor
// activated for ipv4 vpn — as route-reflector client when the node is a
// route reflector — and each originated network with a route map that sets
// its route targets. Route maps come before the router block that uses them.
func FRRConfig(t *Topology, node string) (string, error) {
	n, ok := t.Node(node)
	if !ok {
		return "", fmt.Errorf("render frr config: unknown node %q", node)
	}
	if n.BGP == nil {
		return "", fmt.Errorf("render frr config: node %q has no bgp", node)
	}
	source, err := t.UnderlayAddr(node)
	if err != nil {
		return "", fmt.Errorf("render frr config for %q: %w", node, err)
	}
	routerID := n.BGP.RouterID
	if routerID == "" {
		routerID = source.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults traditional\nhostname %s\nlog stdout informational\n!\n", node)
	for i, nw := range n.BGP.Networks {
		fmt.Fprintf(&b, "route-map %s permit 10\n set extcommunity rt %s\nexit\n!\n",
			networkRouteMap(i), strings.Join(nw.RTs, " "))
	}
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp default ipv4-unicast\n no bgp ebgp-requires-policy\n", n.BGP.ASN, routerID)
	if n.BGP.RouteReflector {
		fmt.Fprintf(&b, " bgp cluster-id %s\n", routerID)
	}
	if n.BGP.GracefulRestart {
		b.WriteString(" bgp graceful-restart\n bgp graceful-restart notification\n")
	}
	var peers []string
	for _, nb := range n.BGP.Neighbors {
		addr, err := t.NeighborAddr(nb)
		if err != nil {
			return "", fmt.Errorf("render frr config for %q: %w", node, err)
		}
		asn := nb.ASN
		if asn == 0 {
			asn = n.BGP.ASN
		}
		peer := addr.String()
		peers = append(peers, peer)
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s update-source %s\n", peer, asn, peer, source)
		fmt.Fprintf(&b, " neighbor %s timers 3 9\n neighbor %s timers connect 2\n", peer, peer)
		if asn != n.BGP.ASN {
			fmt.Fprintf(&b, " neighbor %s ebgp-multihop 8\n", peer)
		}
	}
	b.WriteString(" !\n address-family ipv4 vpn\n")
	for i, nb := range n.BGP.Neighbors {
		fmt.Fprintf(&b, "  neighbor %s activate\n", peers[i])
		if n.BGP.RouteReflector && (nb.ASN == 0 || nb.ASN == n.BGP.ASN) {
			fmt.Fprintf(&b, "  neighbor %s route-reflector-client\n", peers[i])
		}
	}
	for i, nw := range n.BGP.Networks {
		fmt.Fprintf(&b, "  network %s rd %s label %d route-map %s\n", nw.Prefix, nw.RD, nw.Label, networkRouteMap(i))
	}
	b.WriteString(" exit-address-family\nexit\n")
	return b.String(), nil
}

// zebraConfig lets BGP next hops resolve over a default route, which hosts
// that only have a default route need.
const zebraConfig = "hostname zebra\nip nht resolve-via-default\n"

func networkRouteMap(i int) string { return fmt.Sprintf("SET-RT-%d", i+1) }
