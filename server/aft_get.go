package server

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ytypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// A Get of state that reaches into .../network-instance/afts, or lies above
// it, is answered from the core's AFT (nos.AFT) at request time: the items
// the path names are looked up (one prefix, group or next hop is one
// lookup; a wildcard reads the VRF's keys first), rendered as the
// generated structs of isthmus-aft, and the path is resolved in them like
// any other. They are read before the core's trees are, never under its
// lock.

type (
	genAfts       = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts
	genAftEntry   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_Ipv4Unicast_Ipv4Entry
	genAftEntrySt = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_Ipv4Unicast_Ipv4Entry_State
	genAftGroup   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHopGroups_NextHopGroup
	genAftGroupSt = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHopGroups_NextHopGroup_State
	genAftMember  = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHopGroups_NextHopGroup_NextHops_NextHop
	genAftMemSt   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHopGroups_NextHopGroup_NextHops_NextHop_State
	genAftHop     = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHops_NextHop
	genAftHopSt   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHops_NextHop_State
	genAftIfRef   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHops_NextHop_InterfaceRef
	genAftIfRefSt = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Afts_NextHops_NextHop_InterfaceRef_State
)

// aftNode is one AFT data node of a Get and how many path elements it
// lies below the node the request named: the Depth extension counts from
// the latter (a Get of a network instance finds its AFT one level down,
// at .../afts; a Get of the root, three).
type aftNode struct {
	*ytypes.TreeNode
	below int
}

// depth returns the depth level to encode the node with for a request at
// level (0: no limit), and false when all of it lies deeper.
func (n aftNode) depth(level uint32) (uint32, bool) {
	switch {
	case level == 0 || n.below <= 0:
		return level, true
	case n.below >= int(level):
		return 0, false
	}
	return level - uint32(n.below), true
}

// aftGet returns the AFT data nodes that q's paths match, sorted by path.
// A malformed key of an entry, group or next hop is InvalidArgument.
func (s *Server) aftGet(typ gpb.GetRequest_DataType, q getQuery) ([]aftNode, error) {
	if typ == gpb.GetRequest_CONFIG {
		return nil, nil
	}
	schema := s.core.SchemaRoot().Dir["network-instances"].Dir["network-instance"].Dir["afts"]
	var out []aftNode
	for _, p := range q.paths {
		el := p.GetElem()
		names := []string{"network-instances", "network-instance", "afts"}
		n := min(len(el), len(names))
		match := true
		for i := range n {
			if el[i].GetName() != names[i] {
				match = false
			}
		}
		if !match {
			continue
		}
		vrf := "*"
		if len(el) > 1 {
			if v, ok := el[1].GetKey()["name"]; ok {
				vrf = v
			}
		}
		var rel []*gpb.PathElem
		if len(el) > 3 {
			rel = el[3:]
		}
		afts, err := s.aftRead(vrf, rel)
		var bad aftKeyError
		if errors.As(err, &bad) {
			return nil, status.Errorf(codes.InvalidArgument, "%s: %v", pathString(q.asked), bad)
		}
		if err != nil {
			return nil, err
		}
		for name, a := range afts {
			at := []*gpb.PathElem{{Name: "network-instances"}, {Name: "network-instance", Key: map[string]string{"name": name}}, {Name: "afts"}}
			if len(rel) == 0 {
				out = append(out, aftNode{&ytypes.TreeNode{Schema: schema, Data: a, Path: &gpb.Path{Elem: at}}, len(at) - len(el)})
				continue
			}
			nodes, err := ytypes.GetNode(schema, a, &gpb.Path{Elem: rel}, &ytypes.GetHandleWildcards{}, &ytypes.GetPartialKeyMatch{}, &ytypes.GetTolerateNil{})
			if err != nil {
				continue // no data there
			}
			for _, nd := range nodes {
				if isEmpty(nd.Data) {
					continue
				}
				nd.Path = &gpb.Path{Elem: append(append([]*gpb.PathElem{}, at...), nd.Path.GetElem()...)}
				out = append(out, aftNode{nd, len(nd.Path.GetElem()) - len(el)})
			}
		}
	}
	if len(out) > 1 {
		keys := make(map[*ytypes.TreeNode]string, len(out))
		for _, n := range out {
			keys[n.TreeNode] = pathString(n.Path)
		}
		slices.SortStableFunc(out, func(a, b aftNode) int { return strings.Compare(keys[a.TreeNode], keys[b.TreeNode]) })
	}
	return out, nil
}

// aftKeyError says that a key of an AFT list entry in a path is not of
// the key's type.
type aftKeyError string

func (e aftKeyError) Error() string { return string(e) }

// clipKey cuts a key value for a message to about 100 bytes.
func clipKey(v string) string {
	if len(v) > 100 {
		return v[:100] + "…"
	}
	return v
}

// aftRead looks up what rel (a path below afts) can name in vrf ("*":
// every VRF) and returns it per VRF.
func (s *Server) aftRead(vrf string, rel []*gpb.PathElem) (map[string]*genAfts, error) {
	aft := s.core.AFT()
	kind := nos.AFTKind(0) // 0: every kind
	var one *nos.AFTKey
	if len(rel) > 0 {
		switch rel[0].GetName() {
		case "ipv4-unicast":
			kind = nos.AFTEntry
			if len(rel) > 1 {
				if v, ok := rel[1].GetKey()["prefix"]; ok && v != "*" {
					p, err := netip.ParsePrefix(v)
					k, ok := nos.AFTEntryKey(vrf, p) // false for an invalid prefix
					if err != nil || !ok {
						return nil, aftKeyError(fmt.Sprintf("key prefix %q of %s is not an IPv4 prefix", clipKey(v), rel[1].GetName()))
					}
					rel[1] = &gpb.PathElem{Name: rel[1].GetName(), Key: map[string]string{"prefix": p.Masked().String()}}
					one = &k
				}
			}
		case "next-hop-groups", "next-hops":
			kind, key := nos.AFTGroup, "id"
			if rel[0].GetName() == "next-hops" {
				kind, key = nos.AFTNextHop, "index"
			}
			if len(rel) > 1 {
				if v, ok := rel[1].GetKey()[key]; ok && v != "*" {
					id, err := strconv.ParseUint(v, 10, 64)
					if err != nil {
						return nil, aftKeyError(fmt.Sprintf("key %s %q of %s is not an unsigned integer", key, clipKey(v), rel[1].GetName()))
					}
					one = &nos.AFTKey{VRF: vrf, Kind: kind, ID: id}
				}
			}
		}
	}
	var keys []nos.AFTKey
	if one != nil && vrf != "*" {
		keys = []nos.AFTKey{*one}
	} else {
		want := func(v string) bool { return vrf == "*" || v == vrf }
		for _, k := range aft.Keys(want, nil) {
			if (kind == 0 || k.Kind == kind) && (one == nil || k.ID == one.ID && k.Kind == one.Kind) {
				keys = append(keys, k)
			}
		}
	}
	out := map[string]*genAfts{}
	for _, it := range aft.Lookup(keys, nil) {
		if !it.Present {
			continue
		}
		a := out[it.Key.VRF]
		if a == nil {
			a = &genAfts{}
			out[it.Key.VRF] = a
		}
		if err := addAFTItem(a, it); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addAFTItem adds one item to a VRF's AFT.
func addAFTItem(a *genAfts, it nos.AFTItem) error {
	k := it.Key
	switch k.Kind {
	case nos.AFTEntry:
		p := k.Prefix().String()
		// The item's slices are shared (nos.AFTItem): the tree gets copies.
		st := &genAftEntrySt{Prefix: &p, NextHopGroup: ptrTo(it.Group), RouteDistinguisher: slices.Clone(it.RDs), RouteTarget: slices.Clone(it.RTs)}
		switch it.Origin {
		case nos.AFTOriginBGP:
			st.OriginProtocol = gen.IsthmusAft_OriginProtocol_BGP
		case nos.AFTOriginStatic:
			st.OriginProtocol = gen.IsthmusAft_OriginProtocol_STATIC
		case nos.AFTOriginPod:
			st.OriginProtocol = gen.IsthmusAft_OriginProtocol_POD
		}
		return a.GetOrCreateIpv4Unicast().AppendIpv4Entry(&genAftEntry{Prefix: &p, State: st})
	case nos.AFTGroup:
		g := &genAftGroup{Id: ptrTo(k.ID), State: &genAftGroupSt{Id: ptrTo(k.ID)}}
		for _, nh := range it.NextHops {
			m := &genAftMember{Index: ptrTo(nh), State: &genAftMemSt{Index: ptrTo(nh), Weight: ptrTo(uint64(1))}}
			if err := g.GetOrCreateNextHops().AppendNextHop(m); err != nil {
				return err
			}
		}
		return a.GetOrCreateNextHopGroups().AppendNextHopGroup(g)
	default:
		h := &genAftHop{Index: ptrTo(k.ID), State: &genAftHopSt{Index: ptrTo(k.ID)}}
		if it.Interface != "" {
			h.InterfaceRef = &genAftIfRef{State: &genAftIfRefSt{Interface: ptrTo(it.Interface)}}
		} else {
			h.State.IpAddress = ptrTo(it.Hop.Endpoint.String())
			h.State.PushedMplsLabelStack = []uint32{it.Hop.Label}
			switch it.Hop.Encap {
			case nos.EncapMPLSoUDP:
				h.State.EncapsulateHeader = gen.IsthmusAft_Encapsulation_MPLS_OVER_UDP
			case nos.EncapMPLSoMPLS:
				h.State.EncapsulateHeader = gen.IsthmusAft_Encapsulation_MPLS_OVER_MPLS
			}
		}
		return a.GetOrCreateNextHops().AppendNextHop(h)
	}
}

func ptrTo[T any](v T) *T { return &v }
