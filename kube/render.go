package kube

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// snapshot is what the renderer reads: the cluster as the informers see it.
type snapshot struct {
	networks   []*v1alpha1.VirtualNetwork
	namespaces []namespaceInfo
	nodes      []nodeInfo
	// pods counts the running pods (not host network, not finished) per
	// namespace.
	pods map[string]int
}

// namespaceInfo is the part of a Namespace the renderer needs.
type namespaceInfo struct {
	name        string
	label       string // value of isthmus.dev/network, if any
	labelled    bool
	terminating bool
}

// nodeInfo is the part of a Node the renderer needs.
type nodeInfo struct {
	name    string
	address netip.Addr // InternalIP
	gnmi    string     // host:port of its isthmusd
}

// vrfIntent is one controller-owned VRF on one node.
type vrfIntent struct {
	network string
	rd      string
	imports []string
	exports []string
	encap   v1alpha1.Encapsulation
	pools   []string
}

func (v vrfIntent) equal(o vrfIntent) bool {
	return v.network == o.network && v.rd == o.rd && v.encap == o.encap &&
		slices.Equal(v.imports, o.imports) && slices.Equal(v.exports, o.exports) && slices.Equal(v.pools, o.pools)
}

func (n nodeIntent) equal(o nodeIntent) bool {
	if len(n.vrfs) != len(o.vrfs) || n.peerAS != o.peerAS || !slices.Equal(n.neighbors, o.neighbors) ||
		!maps.Equal(n.namespaces, o.namespaces) {
		return false
	}
	for name, v := range n.vrfs {
		if ov, ok := o.vrfs[name]; !ok || !v.equal(ov) {
			return false
		}
	}
	return true
}

// nodeIntent is the controller-owned configuration of one node.
type nodeIntent struct {
	vrfs map[string]vrfIntent
	// namespaces maps each Kubernetes namespace whose network is on the
	// node to that network's VRF (/cni/namespaces, which the node's CNI
	// daemon reads when it attaches a pod).
	namespaces map[string]string
	// neighbors are the route reflectors, with peerAS.
	neighbors []netip.Addr
	peerAS    uint32
}

// networkView is what the renderer concludes about one network.
type networkView struct {
	vn       *v1alpha1.VirtualNetwork
	accepted bool
	reason   string // when not accepted
	message  string
	// namespaces mapped to the network, sorted.
	namespaces []string
	// pods of those namespaces.
	pods int
	// active: the network is on the nodes (accepted, and not deleted, or
	// deleted but still used by pods).
	active bool
	// blocks is node name → block, the persisted ones plus new ones.
	blocks map[string]string
	// blocksChanged says blocks differ from the persisted status.
	blocksChanged bool
	// exhausted lists nodes that got no block.
	exhausted []string
}

// plan is the renderer's output.
type plan struct {
	networks map[string]*networkView
	nodes    map[string]nodeIntent
}

// networkOf returns the VirtualNetwork a namespace's pods join ("" for none).
func networkOf(cfg *Config, ns namespaceInfo) string {
	if slices.Contains(cfg.ExcludedNamespaces, ns.name) {
		return ""
	}
	if ns.labelled {
		return ns.label
	}
	if cfg.NamespaceIsolation {
		return cfg.IsolationPrefix + ns.name
	}
	return cfg.DefaultNetwork
}

// render computes, purely from s, every node's intended configuration and
// each network's view. It allocates blocks for nodes that have none; the
// caller persists them (status.blocks) before pushing them to nodes.
func render(cfg *Config, s snapshot) plan {
	p := plan{networks: map[string]*networkView{}, nodes: map[string]nodeIntent{}}
	var accepted []*networkView
	// Networks already accepted first, then oldest first: a network keeps
	// what a newer one conflicts with (creation times have whole seconds,
	// so the status decides between two made in the same second).
	nets := slices.Clone(s.networks)
	slices.SortFunc(nets, func(a, b *v1alpha1.VirtualNetwork) int {
		return cmp.Or(cmp.Compare(acceptedRank(a), acceptedRank(b)),
			a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	for _, vn := range nets {
		p.networks[vn.Name] = &networkView{vn: vn, accepted: true, blocks: map[string]string{}}
	}
	for _, ns := range s.namespaces {
		n := networkOf(cfg, ns)
		if v := p.networks[n]; v != nil {
			v.namespaces = append(v.namespaces, ns.name)
			v.pods += s.pods[ns.name]
		}
	}
	rdOwner := map[int32]string{}
	rts := newRTIndex()
	for _, vn := range nets {
		v := p.networks[vn.Name]
		sort.Strings(v.namespaces)
		if other, dup := rdOwner[vn.Spec.RouteDistinguisher.Number]; dup {
			v.accepted, v.reason = false, v1alpha1.ReasonRDConflict
			v.message = fmt.Sprintf("route distinguisher number %d is already network %q's", vn.Spec.RouteDistinguisher.Number, other)
		} else if other, a, b := rts.overlapping(vn); other != "" {
			v.accepted, v.reason = false, v1alpha1.ReasonSubnetOverlap
			v.message = fmt.Sprintf("subnet %s overlaps %s of network %q, whose routes it shares by route target", a, b, other)
		}
		if !v.accepted {
			continue
		}
		rdOwner[vn.Spec.RouteDistinguisher.Number] = vn.Name
		rts.add(vn)
		accepted = append(accepted, v)
		v.active = vn.DeletionTimestamp == nil || v.pods > 0
		allocate(v, s.nodes)
	}
	for _, nd := range s.nodes {
		in := nodeIntent{vrfs: make(map[string]vrfIntent, len(accepted)), namespaces: map[string]string{}}
		if len(cfg.RouteReflectors) > 0 {
			in.neighbors, in.peerAS = cfg.RouteReflectors, cfg.BGPAS
		}
		for _, v := range accepted {
			block, ok := v.blocks[nd.name]
			if !v.active || !ok || !nd.address.IsValid() {
				continue
			}
			in.vrfs[v.vn.Name] = vrfOf(v.vn, nd.address, block)
			for _, ns := range v.namespaces {
				in.namespaces[ns] = v.vn.Name
			}
		}
		p.nodes[nd.name] = in
	}
	return p
}

// vrfOf renders network vn on a node with the given address and block.
func vrfOf(vn *v1alpha1.VirtualNetwork, node netip.Addr, block string) vrfIntent {
	sp := vn.Spec
	imports, exports := routeTargetsOf(vn)
	return vrfIntent{
		network: vn.Name,
		rd:      node.String() + ":" + strconv.Itoa(int(sp.RouteDistinguisher.Number)),
		imports: imports,
		exports: exports,
		encap:   cmp.Or(sp.Encapsulation, v1alpha1.MPLSOverUDP),
		pools:   []string{block},
	}
}

func sortedSet(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// rtIndex holds the accepted networks by the route targets they import
// and export, so that a network is checked for overlapping subnets only
// against the networks it shares routes with.
type rtIndex struct {
	importers, exporters map[string][]*v1alpha1.VirtualNetwork
}

func newRTIndex() *rtIndex {
	return &rtIndex{importers: map[string][]*v1alpha1.VirtualNetwork{}, exporters: map[string][]*v1alpha1.VirtualNetwork{}}
}

func routeTargetsOf(vn *v1alpha1.VirtualNetwork) (imports, exports []string) {
	var ext []string
	if vn.Spec.ExternalAccess != nil {
		ext = vn.Spec.ExternalAccess.RouteTargets
	}
	return sortedSet(vn.Spec.ImportRouteTargets, ext), sortedSet(vn.Spec.ExportRouteTargets, ext)
}

func (x *rtIndex) add(vn *v1alpha1.VirtualNetwork) {
	imports, exports := routeTargetsOf(vn)
	for _, rt := range imports {
		x.importers[rt] = append(x.importers[rt], vn)
	}
	for _, rt := range exports {
		x.exporters[rt] = append(x.exporters[rt], vn)
	}
}

// overlapping reports a subnet of vn overlapping a subnet of an accepted
// network that shares routes with it (one imports a route target the other
// exports). Networks that share no route target may reuse addresses: their
// VRFs never meet.
func (x *rtIndex) overlapping(vn *v1alpha1.VirtualNetwork) (network, mine, theirs string) {
	imports, exports := routeTargetsOf(vn)
	var peers []*v1alpha1.VirtualNetwork
	for _, rt := range imports {
		peers = append(peers, x.exporters[rt]...)
	}
	for _, rt := range exports {
		peers = append(peers, x.importers[rt]...)
	}
	for _, o := range peers {
		for _, a := range vn.Spec.Subnets {
			pa, err := netip.ParsePrefix(a)
			if err != nil {
				continue
			}
			for _, b := range o.Spec.Subnets {
				if pb, err := netip.ParsePrefix(b); err == nil && pa.Overlaps(pb) {
					return o.Name, a, b
				}
			}
		}
	}
	return "", "", ""
}

// allocate keeps every persisted block of a node that still exists and
// carves the lowest free block for each node without one.
func allocate(v *networkView, nodes []nodeInfo) {
	bits := int(v.vn.Spec.BlockSize)
	if bits == 0 {
		bits = 26
	}
	exists := make(map[string]bool, len(nodes))
	for _, nd := range nodes {
		exists[nd.name] = true
	}
	used := map[netip.Prefix]bool{}
	for _, b := range v.vn.Status.Blocks {
		p, err := netip.ParsePrefix(b.Prefix)
		if err != nil || !exists[b.Node] || p.Bits() != bits || !inSubnets(p, v.vn.Spec.Subnets) {
			v.blocksChanged = true // dropped: node gone, or the spec changed
			continue
		}
		if _, dup := v.blocks[b.Node]; dup || used[p] {
			v.blocksChanged = true
			continue
		}
		v.blocks[b.Node] = b.Prefix
		used[p] = true
	}
	for _, nd := range nodes {
		if _, ok := v.blocks[nd.name]; ok {
			continue
		}
		p, ok := freeBlock(v.vn.Spec.Subnets, bits, used)
		if !ok {
			v.exhausted = append(v.exhausted, nd.name)
			continue
		}
		used[p] = true
		v.blocks[nd.name] = p.String()
		v.blocksChanged = true
	}
}

func inSubnets(p netip.Prefix, subnets []string) bool {
	for _, s := range subnets {
		if sp, err := netip.ParsePrefix(s); err == nil && sp.Bits() <= p.Bits() && sp.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// freeBlock returns the lowest block of the given length in subnets not in used.
func freeBlock(subnets []string, bits int, used map[netip.Prefix]bool) (netip.Prefix, bool) {
	for _, s := range subnets {
		sp, err := netip.ParsePrefix(s)
		if err != nil || !sp.Addr().Is4() || sp.Bits() > bits {
			continue
		}
		sp = sp.Masked()
		step := uint32(1) << (32 - bits)
		count := uint64(1) << (bits - sp.Bits())
		base := ipv4Uint(sp.Addr())
		for i := range count {
			p := netip.PrefixFrom(uint32IPv4(base+uint32(i)*step), bits)
			if !used[p] {
				return p, true
			}
		}
	}
	return netip.Prefix{}, false
}

func ipv4Uint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uint32IPv4(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// acceptedRank is 0 for a network its status says is accepted, else 1.
func acceptedRank(vn *v1alpha1.VirtualNetwork) int {
	for _, c := range vn.Status.Conditions {
		if c.Type == v1alpha1.ConditionAccepted && c.Status == "True" {
			return 0
		}
	}
	return 1
}
