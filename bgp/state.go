package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/openconfig/ygot/ygot"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// stateInterval is the shortest time between two state publications: a
// burst of route changes produces one update of the counters, not one per
// route. GoBGP's own per-peer counters (received; sent, on a speaker that
// passes routes on) are counted by walks of its tables on its main loop,
// which stops taking UPDATEs meanwhile, so they are read at most every
// gobgpCountersInterval or after a session changed state, and only once
// no path has arrived for quietPeriod: never in the middle of a full
// table.
const (
	stateInterval         = time.Second
	gobgpCountersInterval = 30 * time.Second
	quietPeriod           = time.Second
)

// peerStatus is what the peer-state events tell about one session.
type peerStatus struct {
	state         bgp.FSMState
	establishedAt time.Time
	transitions   uint64
	localAddress  netip.Addr
	localPort     uint32
	remotePort    uint32
}

// onPeer is GoBGP's peer-state callback.
func (r *Reconciler) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE && ev.Type != apiutil.PEER_EVENT_INIT {
		return
	}
	addr := ev.Peer.State.NeighborAddress
	if !addr.IsValid() {
		addr = ev.Peer.Conf.NeighborAddress
	}
	r.mu.Lock()
	ps := r.peers[addr]
	if ps == nil {
		ps = &peerStatus{}
		r.peers[addr] = ps
	}
	st := ev.Peer.State.SessionState
	if st == bgp.BGP_FSM_ESTABLISHED && ps.state != bgp.BGP_FSM_ESTABLISHED {
		ps.establishedAt = at
		ps.transitions++
		r.log.Info("bgp session established", "neighbor", addr)
	}
	if st != bgp.BGP_FSM_ESTABLISHED && ps.state == bgp.BGP_FSM_ESTABLISHED {
		r.log.Info("bgp session down", "neighbor", addr, "reason", ev.Peer.State.DisconnectMessage)
		delete(r.eor, addr)
		r.keepStale(addr)
	}
	if st != ps.state {
		r.countersStale = true
	}
	ps.state = st
	ps.localAddress = ev.Peer.Transport.LocalAddress
	ps.localPort, ps.remotePort = ev.Peer.Transport.LocalPort, ev.Peer.Transport.RemotePort
	r.mu.Unlock()
	r.signalState()
}

// stateLoop publishes state when something changed, at most once per
// stateInterval. Between changes it keeps each established session's
// uptime current, touching that leaf only.
func (r *Reconciler) stateLoop(ctx context.Context) {
	tick := time.NewTicker(stateInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := r.publishUptimes(); err != nil && ctx.Err() == nil {
				r.log.Warn("publish bgp uptime", "err", err)
			}
			continue
		case <-r.stateWake:
		}
		if err := r.publishState(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("publish bgp state", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(stateInterval):
		}
	}
}

// publishUptimes writes the uptime of every established session. r.mu is
// held throughout, so a neighbor a commit removes (and the core prunes
// from the state tree after Apply) is never written back.
func (r *Reconciler) publishUptimes() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.core == nil || r.applied == nil || r.applied.bgpPath == "" {
		return nil
	}
	now := time.Now()
	var errs []error
	for a, p := range r.peers {
		if _, ok := r.applied.neighbors[a]; !ok || p.state != bgp.BGP_FSM_ESTABLISHED {
			continue
		}
		base := fmt.Sprintf("%s/neighbors/neighbor[neighbor-address=%s]", r.applied.bgpPath, a)
		errs = append(errs, r.core.UpdateState(base+"/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State{
			Uptime: ygot.Uint64(uint64(now.Sub(p.establishedAt) / time.Second)),
		}))
	}
	return errors.Join(errs...)
}

// stateSnapshot is what publishState reads under r.mu.
type stateSnapshot struct {
	core      *nos.Core
	sp        *speaker
	applied   *intent
	exported  map[string]uint32
	peers     map[netip.Addr]peerStatus
	labels    map[string][]uint32
	bgpPath   string
	neighbors map[netip.Addr]neighborSpec
}

func (r *Reconciler) snapshot() stateSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := stateSnapshot{
		core: r.core, sp: r.sp, applied: r.applied,
		exported: map[string]uint32{}, peers: map[netip.Addr]peerStatus{}, labels: map[string][]uint32{},
		neighbors: map[netip.Addr]neighborSpec{},
	}
	for k := range r.exported {
		s.exported[k.vrf]++
	}
	for a, p := range r.peers {
		s.peers[a] = *p
	}
	for a, n := range r.applied.neighbors {
		s.neighbors[a] = n
	}
	s.bgpPath = r.applied.bgpPath
	return s
}

// publishState writes neighbor, global and VRF state into the tree.
func (r *Reconciler) publishState(ctx context.Context) error {
	s := r.snapshot()
	if s.core == nil {
		return nil
	}
	rc := r.rib.counters()
	var errs []error
	for lbl, o := range s.core.Labels().All() {
		if !o.Prefix.IsValid() {
			s.labels[o.VRF] = append(s.labels[o.VRF], lbl)
		}
	}
	for name := range s.applied.vrfs {
		st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{
			Exported: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Exported{
				Routes: ygot.Uint32(s.exported[name]),
			},
			Imported: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Imported{
				Routes: ygot.Uint32(uint32(rc.vrfRoutes[name])),
			},
		}
		if l := s.labels[name]; len(l) > 0 {
			sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
			st.Exported.Labels = l
		}
		errs = append(errs, s.core.UpdateState(niPath(name)+"/state", st))
	}
	if s.sp == nil || s.bgpPath == "" {
		return errors.Join(errs...)
	}
	counters, err := r.gobgpCounters(ctx, s.sp, s.applied.transit())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	g := s.applied.global
	errs = append(errs, s.core.UpdateState(s.bgpPath+"/global/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Global_State{
		As:            ygot.Uint32(g.as),
		RouterId:      ygot.String(g.routerID.String()),
		TotalPaths:    ygot.Uint32(uint32(rc.paths)),
		TotalPrefixes: ygot.Uint32(uint32(sumRoutes(rc.vrfRoutes))),
	}))
	now := time.Now()
	for addr, n := range s.neighbors {
		errs = append(errs, r.publishNeighbor(s, addr, n, counters[addr], rc, now)...)
	}
	return errors.Join(errs...)
}

// gobgpCounters returns GoBGP's per-peer counters, read again when they
// are older than gobgpCountersInterval or a session changed state, and
// paths have stopped arriving. While they arrive the cached counters are
// returned and another publication is due once it is quiet. sent is
// GoBGP's count only for a transit speaker (it costs a walk of the whole
// table through the export policy); a host sends its own routes only.
func (r *Reconciler) gobgpCounters(ctx context.Context, sp *speaker, transit bool) (map[netip.Addr]peerCounters, error) {
	r.mu.Lock()
	due := r.countersFrom != sp || time.Since(r.countersAt) >= gobgpCountersInterval || r.countersStale
	cached := r.counters
	r.mu.Unlock()
	if !due {
		return cached, nil
	}
	if busy := time.Since(time.Unix(0, r.lastPathAt.Load())); busy < quietPeriod {
		time.AfterFunc(quietPeriod-busy, r.signalState)
		return cached, nil
	}
	c, err := sp.counters(ctx, transit)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.counters, r.countersAt, r.countersFrom, r.countersStale = c, time.Now(), sp, false
	r.mu.Unlock()
	return c, nil
}

func sumRoutes(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (r *Reconciler) publishNeighbor(s stateSnapshot, addr netip.Addr, n neighborSpec, c peerCounters, rc ribCounters, now time.Time) []error {
	base := fmt.Sprintf("%s/neighbors/neighbor[neighbor-address=%s]", s.bgpPath, addr)
	ps := s.peers[addr]
	st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State{
		NeighborAddress:        ygot.String(addr.String()),
		PeerAs:                 ygot.Uint32(n.peerAS),
		Enabled:                ygot.Bool(n.enabled),
		SessionState:           sessionEnum(ps.state),
		EstablishedTransitions: ygot.Uint64(ps.transitions),
		Uptime:                 ygot.Uint64(0),
	}
	if n.description != "" {
		st.Description = ygot.String(n.description)
	}
	if !ps.establishedAt.IsZero() {
		st.LastEstablished = ygot.Uint64(uint64(ps.establishedAt.UnixNano()))
		if ps.state == bgp.BGP_FSM_ESTABLISHED {
			st.Uptime = ygot.Uint64(uint64(now.Sub(ps.establishedAt) / time.Second))
		}
	}
	errs := []error{s.core.UpdateState(base+"/state", st)}
	if ps.localAddress.IsValid() {
		errs = append(errs, s.core.UpdateState(base+"/transport/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_Transport_State{
			LocalAddress: ygot.String(ps.localAddress.String()),
			LocalPort:    ygot.Uint16(uint16(ps.localPort)),
			RemotePort:   ygot.Uint16(uint16(ps.remotePort)),
		}))
	}
	errs = append(errs, s.core.UpdateState(base+"/graceful-restart/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_GracefulRestart_State{
		Enabled:         ygot.Bool(n.gr.enabled),
		RestartTime:     ygot.Uint16(n.gr.restartTime),
		StaleRoutesTime: ygot.Uint16(n.gr.staleRoutesTime),
		PeerRestartTime: ygot.Uint16(uint16(c.peerRestartTime)),
	}))
	if n.families&familyVPNv4 != 0 {
		sent := uint32(c.sent)
		if !s.applied.transit() {
			sent = 0
			if ps.state == bgp.BGP_FSM_ESTABLISHED {
				for _, k := range s.exported {
					sent += k
				}
			}
		}
		errs = append(errs, s.core.UpdateState(base+"/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State{
			AfiSafiName: gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST,
			Enabled:     ygot.Bool(true),
			Prefixes: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State_Prefixes{
				Received:  ygot.Uint32(uint32(c.received)),
				Sent:      ygot.Uint32(sent),
				Installed: ygot.Uint32(uint32(rc.installed[addr])),
				Rejected:  ygot.Uint32(uint32(rc.rejected[addr])),
			},
		}))
	}
	return errs
}

func sessionEnum(s bgp.FSMState) gen.E_IsthmusTypes_SessionState {
	switch s {
	case bgp.BGP_FSM_CONNECT:
		return gen.IsthmusTypes_SessionState_CONNECT
	case bgp.BGP_FSM_ACTIVE:
		return gen.IsthmusTypes_SessionState_ACTIVE
	case bgp.BGP_FSM_OPENSENT:
		return gen.IsthmusTypes_SessionState_OPENSENT
	case bgp.BGP_FSM_OPENCONFIRM:
		return gen.IsthmusTypes_SessionState_OPENCONFIRM
	case bgp.BGP_FSM_ESTABLISHED:
		return gen.IsthmusTypes_SessionState_ESTABLISHED
	}
	return gen.IsthmusTypes_SessionState_IDLE
}
