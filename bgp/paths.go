package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/gen"
)

// Paths per neighbor and family, read on request: a Get of
// .../neighbor/afi-safis/afi-safi/paths (or of anything above it) lists the
// neighbor's Adj-RIB-In and Adj-RIB-Out in GoBGP at that moment and writes
// them as state, replacing what an earlier Get wrote. Nothing is streamed
// or kept up to date between Gets.

// pathsPrefix is the schema path the refresher is registered for.
const pathsPrefix = "/network-instances/network-instance/protocols/protocol/bgp/neighbors/neighbor/afi-safis/afi-safi/paths"

type (
	genPaths      = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_Paths
	genReceived   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_Paths_Received
	genAdvertised = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_Paths_Advertised
	genRecvPath   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_Paths_Received_Path
	genAdvPath    = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_Paths_Advertised_Path
	genPathState  = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_Paths_Received_Path_State
	genAdvState   = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_Paths_Advertised_Path_State
)

// pathsRequest is what a Get asked for, from its path's keys ("" or "*":
// any).
type pathsRequest struct {
	instance, neighbor, family string
}

func pathsRequestOf(p *gpb.Path) pathsRequest {
	var q pathsRequest
	for _, e := range p.GetElem() {
		switch e.GetName() {
		case "network-instance":
			q.instance = e.GetKey()["name"]
		case "neighbor":
			q.neighbor = e.GetKey()["neighbor-address"]
		case "afi-safi":
			q.family = e.GetKey()["afi-safi-name"]
		}
	}
	return q
}

func anyOr(want, have string) bool { return want == "" || want == "*" || want == have }

// pathRow is one path as the state shows it.
type pathRow struct {
	nlri      string
	pathID    uint32
	prefix    netip.Prefix
	rd        string
	nextHop   netip.Addr
	label     uint32
	hasLabel  bool
	rts       []string
	asPath    string
	localPref uint32
	hasLP     bool
}

// rowOf reads a GoBGP path; ok is false for an NLRI of another kind.
func rowOf(p *apiutil.Path, out bool) (pathRow, bool) {
	var row pathRow
	switch n := p.Nlri.(type) {
	case *bgp.LabeledVPNIPAddrPrefix:
		row.prefix, row.rd = n.Prefix.Masked(), n.RD.String()
		if len(n.Labels.Labels) > 0 {
			row.label, row.hasLabel = n.Labels.Labels[0], true
		}
		row.nlri = row.rd + ":" + row.prefix.String()
	case *bgp.IPAddrPrefix:
		row.prefix = n.Prefix.Masked()
		row.nlri = row.prefix.String()
	default:
		return row, false
	}
	row.pathID = p.RemoteID
	if out {
		row.pathID = p.LocalID
	}
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			row.nextHop = a.Nexthop
		case *bgp.PathAttributeNextHop:
			if !row.nextHop.IsValid() {
				row.nextHop = a.Value
			}
		case *bgp.PathAttributeLocalPref:
			row.localPref, row.hasLP = a.Value, true
		case *bgp.PathAttributeAsPath:
			var as []string
			for _, seg := range a.Value {
				for _, n := range seg.GetAS() {
					as = append(as, fmt.Sprint(n))
				}
			}
			row.asPath = strings.Join(as, " ")
		case *bgp.PathAttributeExtendedCommunities:
			for _, ec := range a.Value {
				if t, ok := rtOf(ec); ok {
					row.rts = append(row.rts, t.String())
				}
			}
		}
	}
	return row, true
}

// listPaths returns the paths of one neighbor's table in a family, sorted.
func listPaths(sp *speaker, table api.TableType, neighbor netip.Addr, f family) ([]pathRow, error) {
	fam := bgp.RF_IPv4_VPN
	if f == familyIPv4 {
		fam = bgp.RF_IPv4_UC
	}
	var rows []pathRow
	out := table == api.TableType_TABLE_TYPE_ADJ_OUT
	err := sp.srv.ListPath(apiutil.ListPathRequest{TableType: table, Name: neighbor.String(), Family: fam}, func(_ bgp.NLRI, paths []*apiutil.Path) {
		for _, p := range paths {
			if p.Withdrawal {
				continue
			}
			if row, ok := rowOf(p, out); ok {
				rows = append(rows, row)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list %s paths of neighbor %s: %w", f, neighbor, err)
	}
	slices.SortFunc(rows, func(a, b pathRow) int {
		return cmp.Or(cmp.Compare(a.nlri, b.nlri), cmp.Compare(a.pathID, b.pathID))
	})
	return rows, nil
}

func (row pathRow) state() *genPathState {
	st := &genPathState{
		Nlri:        ptr(row.nlri),
		PathId:      ptr(row.pathID),
		Prefix:      ptr(row.prefix.String()),
		RouteTarget: row.rts,
		AsPath:      ptr(row.asPath),
	}
	if row.rd != "" {
		st.RouteDistinguisher = ptr(row.rd)
	}
	if row.nextHop.IsValid() {
		st.NextHop = ptr(row.nextHop.String())
	}
	if row.hasLabel {
		st.Label = ptr(row.label)
	}
	if row.hasLP {
		st.LocalPref = ptr(row.localPref)
	}
	return st
}

func ptr[T any](v T) *T { return &v }

// pathsOf builds the state of one neighbor and family.
func pathsOf(received, advertised []pathRow) (*genPaths, error) {
	ps := &genPaths{Received: &genReceived{}, Advertised: &genAdvertised{}}
	for _, row := range received {
		if err := ps.Received.AppendPath(&genRecvPath{Nlri: ptr(row.nlri), PathId: ptr(row.pathID), State: row.state()}); err != nil {
			return nil, fmt.Errorf("add received path %s: %w", row.nlri, err)
		}
	}
	for _, row := range advertised {
		st := row.state()
		adv := &genAdvState{
			Nlri: st.Nlri, PathId: st.PathId, Prefix: st.Prefix, RouteDistinguisher: st.RouteDistinguisher,
			NextHop: st.NextHop, Label: st.Label, RouteTarget: st.RouteTarget, AsPath: st.AsPath, LocalPref: st.LocalPref,
		}
		if err := ps.Advertised.AppendPath(&genAdvPath{Nlri: ptr(row.nlri), PathId: ptr(row.pathID), State: adv}); err != nil {
			return nil, fmt.Errorf("add advertised path %s: %w", row.nlri, err)
		}
	}
	return ps, nil
}

// refreshPaths is the on-request refresher of neighbors' paths.
func (r *Reconciler) refreshPaths(ctx context.Context, p *gpb.Path) error {
	q := pathsRequestOf(p)
	r.mu.Lock()
	sp, applied := r.sp, r.applied
	r.mu.Unlock()
	if sp == nil || applied == nil || !anyOr(q.instance, instanceOf(applied.bgpPath)) {
		return nil
	}
	type write struct {
		addr netip.Addr
		path string
		ps   *genPaths
	}
	var writes []write
	for addr, n := range applied.neighbors {
		if !anyOr(q.neighbor, addr.String()) {
			continue
		}
		for _, f := range []family{familyVPNv4, familyIPv4} {
			if n.families&f == 0 || !anyOr(q.family, f.String()) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			in, err := listPaths(sp, api.TableType_TABLE_TYPE_ADJ_IN, addr, f)
			if err != nil {
				return err
			}
			out, err := listPaths(sp, api.TableType_TABLE_TYPE_ADJ_OUT, addr, f)
			if err != nil {
				return err
			}
			ps, err := pathsOf(in, out)
			if err != nil {
				return err
			}
			writes = append(writes, write{addr, fmt.Sprintf("%s/afi-safis/afi-safi[afi-safi-name=%s]/paths", neighborPath(applied.bgpPath, addr), f), ps})
		}
	}
	// Written under r.mu, and only for neighbors still applied, as all of
	// BGP's state (state.go).
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, w := range writes {
		if r.applied == nil || r.applied.neighbors[w.addr].families == 0 {
			continue
		}
		if err := r.core.DeleteState(w.path); err != nil {
			errs = append(errs, fmt.Errorf("clear paths of neighbor %s: %w", w.addr, err))
			continue
		}
		if err := r.core.UpdateState(w.path, w.ps); err != nil {
			errs = append(errs, fmt.Errorf("write paths of neighbor %s: %w", w.addr, err))
		}
	}
	// A neighbor whose configuration went meanwhile has no state to write.
	errs = slices.DeleteFunc(errs, refused)
	return errors.Join(errs...)
}

// instanceOf returns the network instance name of a BGP state path.
func instanceOf(bgpPath string) string {
	_, rest, ok := strings.Cut(bgpPath, "network-instance[name=")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "]")
	return name
}
