package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
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
	var resend *speaker
	if st == bgp.BGP_FSM_ESTABLISHED && ps.state != bgp.BGP_FSM_ESTABLISHED {
		ps.establishedAt = at
		ps.transitions++
		r.log.Info("bgp session established", "neighbor", addr)
		if !r.restart {
			resend = r.sp
		}
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
	transitions := ps.transitions
	r.mu.Unlock()
	if resend != nil {
		go r.resendAfterUp(resend, addr, transitions)
	}
	r.signalState()
}

// stateRetries bounds how often a publication with a failed write is
// retried (once per stateInterval) before waiting for the next change.
const stateRetries = 3

// stateLoop publishes state when something changed, at most once per
// stateInterval. Between changes it keeps each established session's
// uptime current, touching that leaf only. A publication that fails is
// retried a few times; a failure is logged once, not at every attempt.
func (r *Reconciler) stateLoop(ctx context.Context) {
	tick := time.NewTicker(stateInterval)
	defer tick.Stop()
	uptimes := &failures{log: r.log, what: "publish bgp uptime"}
	state := &failures{log: r.log, what: "publish bgp state"}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := r.publishUptimes(); ctx.Err() == nil {
				uptimes.note(err)
			}
			continue
		case <-r.stateWake:
		}
		err := r.publishState(ctx)
		if ctx.Err() != nil {
			return
		}
		retry := state.note(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(stateInterval):
		}
		if retry {
			r.signalState()
		}
	}
}

// failures logs the errors of a repeated job without flooding the log: an
// error is logged once until the job succeeds again or fails differently.
// A write the core refuses because its entry has just left the
// configuration is expected in a race with a commit, and only debugged.
type failures struct {
	log  *slog.Logger
	what string
	last string // the error last logged
	n    int    // consecutive failures
}

// note records the outcome of one run and reports whether to retry.
func (f *failures) note(err error) bool {
	if err == nil {
		f.last, f.n = "", 0
		return false
	}
	f.n++
	switch msg := err.Error(); {
	case refused(err), msg == f.last:
		f.log.Debug(f.what, "err", err, "attempt", f.n)
	default:
		f.last = msg
		f.log.Warn(f.what, "err", err)
	}
	return f.n <= stateRetries
}

// refused reports whether every error in err is the core refusing state
// of an entry that is not configured (a publication joins its writes'
// errors; one real failure among them is not hidden).
func refused(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !refused(e) {
				return false
			}
		}
		return len(j.Unwrap()) > 0
	}
	return errors.Is(err, nos.ErrNoConfig)
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
		errs = append(errs, r.core.UpdateState(neighborPath(r.applied.bgpPath, a)+"/state", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State{
			Uptime: ygot.Uint64(uint64(now.Sub(p.establishedAt) / time.Second)),
		}))
	}
	return errors.Join(errs...)
}

func neighborPath(bgpPath string, a netip.Addr) string {
	return fmt.Sprintf("%s/neighbors/neighbor[neighbor-address=%s]", bgpPath, a)
}

// stateSnapshot is what publishState reads under r.mu: copies only, never
// a map that Apply changes.
type stateSnapshot struct {
	core      *nos.Core
	sp        *speaker
	global    globalSpec
	transit   bool
	bgpPath   string
	vrfs      []string          // the VRFs whose state may have changed (all: every VRF)
	all       bool              // every VRF's state is written
	exported  map[string]uint32 // exported routes per VRF in vrfs
	sent      uint32            // exported routes in all
	peers     map[netip.Addr]peerStatus
	neighbors map[netip.Addr]neighborSpec
}

func (r *Reconciler) snapshot() stateSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := stateSnapshot{
		core: r.core, sp: r.sp,
		exported: map[string]uint32{}, peers: map[netip.Addr]peerStatus{},
		neighbors: map[netip.Addr]neighborSpec{},
	}
	if r.applied == nil {
		return s
	}
	s.global, s.transit, s.bgpPath = r.applied.global, r.applied.transit(), r.applied.bgpPath
	// Only the VRFs a commit touched since the last publication (and, in
	// publishState, those whose imported routes changed): a commit that
	// changes one VRF publishes one VRF's state.
	s.all, s.sent = r.stateAll || r.view == nil, uint32(len(r.exported))
	if s.all {
		for name := range r.applied.vrfs {
			s.vrfs = append(s.vrfs, name)
		}
		for k := range r.exported {
			s.exported[k.vrf]++
		}
	} else {
		for name := range r.stateDirty {
			if _, ok := r.applied.vrfs[name]; ok {
				s.vrfs = append(s.vrfs, name)
				s.exported[name] = uint32(len(r.view.exportedIn[name]))
			}
		}
	}
	r.stateAll, r.stateDirty = false, map[string]bool{}
	for a, p := range r.peers {
		s.peers[a] = *p
	}
	for a, n := range r.applied.neighbors {
		s.neighbors[a] = n
	}
	return s
}

// stateWrite is one state update publishState makes, and the entry it
// belongs to: a VRF, a neighbor or the speaker.
type stateWrite struct {
	path     string
	st       ygot.GoStruct
	vrf      string
	neighbor netip.Addr
}

// publishState writes neighbor, global and VRF state into the tree. What
// is slow (GoBGP's counters, the RIB's and the labels') is read without
// r.mu; the writes are made under it, each only if its entry is still
// applied, so a commit that deletes a VRF or a neighbor meanwhile (and
// prunes its state once Apply returns) never gets that state back.
func (r *Reconciler) publishState(ctx context.Context) error {
	s := r.snapshot()
	if s.core == nil {
		return nil
	}
	also := make(map[string]bool, len(s.vrfs))
	for _, name := range s.vrfs {
		also[name] = true
	}
	rc := r.rib.countersOf(s.all, also)
	for name := range rc.vrfRoutes {
		if !also[name] {
			// Its imported routes changed: its state is written too.
			s.vrfs = append(s.vrfs, name)
			s.exported[name] = r.exportedCount(name)
		}
	}
	sort.Strings(s.vrfs) // not under r.mu, which Apply waits for
	labels := map[string][]uint32{}
	if s.all {
		for lbl, o := range s.core.Labels().All() {
			if !o.Prefix.IsValid() {
				labels[o.VRF] = append(labels[o.VRF], lbl)
			}
		}
	} else {
		for _, name := range s.vrfs {
			for lbl, o := range s.core.Labels().OfVRF(name) {
				if !o.Prefix.IsValid() {
					labels[name] = append(labels[name], lbl)
				}
			}
		}
	}
	writes := vrfWrites(s, rc, labels)
	var errs []error
	if s.sp != nil && s.bgpPath != "" {
		counters, err := r.gobgpCounters(ctx, s.sp, s.transit)
		if err != nil {
			errs = append(errs, err)
		} else {
			writes = append(writes, speakerWrites(s, rc, counters, time.Now())...)
		}
	}
	err := errors.Join(append(errs, r.write(s, writes))...)
	if err != nil {
		// The retry writes every VRF: the ones this publication meant to
		// write are not remembered.
		r.mu.Lock()
		r.stateAll = true
		r.mu.Unlock()
	}
	return err
}

// exportedCount returns how many routes are exported under vrf's name.
func (r *Reconciler) exportedCount(vrf string) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.view != nil {
		return uint32(len(r.view.exportedIn[vrf]))
	}
	n := uint32(0)
	for k := range r.exported {
		if k.vrf == vrf {
			n++
		}
	}
	return n
}

// write makes the writes whose entry is still applied, with r.mu held.
func (r *Reconciler) write(s stateSnapshot, writes []stateWrite) error {
	if s.core == nil {
		return nil
	}
	// Read before r.mu, which Apply waits for: a VRF deleted and
	// configured again after this read is applied again by an Apply that
	// signals another publication, which writes its state.
	unchanged := unchangedVRFState(s.core, writes)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.core != s.core || r.applied == nil {
		return nil
	}
	var errs []error
	for i, w := range writes {
		switch {
		case w.vrf != "":
			if _, ok := r.applied.vrfs[w.vrf]; !ok || unchanged[i] {
				continue
			}
		case r.sp != s.sp || r.applied.bgpPath != s.bgpPath:
			continue
		case w.neighbor.IsValid():
			if _, ok := r.applied.neighbors[w.neighbor]; !ok {
				continue
			}
		}
		errs = append(errs, r.core.UpdateState(w.path, w.st))
	}
	return errors.Join(errs...)
}

// unchangedVRFState reports which VRF writes would write what the state
// tree holds already, so that a publication after a commit that changed
// one VRF writes that VRF's state, not every VRF's (each write is a walk
// of the schema and a telemetry update; with ten thousand VRFs, a quarter
// of a second, under r.mu, which Apply waits for). The state is read,
// not remembered: a VRF deleted and configured again meanwhile has lost
// its state with its configuration, and gets it written again.
func unchangedVRFState(core *nos.Core, writes []stateWrite) []bool {
	unchanged := make([]bool, len(writes))
	err := core.Read(func(_, state *gen.Device) error {
		nis := nos.NetworkInstances(state)
		for i, w := range writes {
			if w.vrf == "" {
				continue
			}
			var cur ygot.GoStruct
			switch w.st.(type) {
			case *niExportedT:
				if e := nis[w.vrf].GetState().GetExported(); e != nil {
					cur = e
				}
			case *niImportedT:
				if e := nis[w.vrf].GetState().GetImported(); e != nil {
					cur = e
				}
			}
			unchanged[i] = cur != nil && reflect.DeepEqual(cur, w.st)
		}
		return nil
	})
	if err != nil {
		return make([]bool, len(writes)) // write everything
	}
	return unchanged
}

type (
	niExportedT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Exported
	niImportedT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Imported
)

// vrfWrites is the state of every VRF. BGP owns only the exported and
// imported subtrees of a network instance's state (the rest belongs to the
// dataplane), so it writes there and nowhere else.
func vrfWrites(s stateSnapshot, rc ribCounters, labels map[string][]uint32) []stateWrite {
	var out []stateWrite
	for _, name := range s.vrfs {
		base := niPath(name) + "/state"
		e := &niExportedT{Routes: ygot.Uint32(s.exported[name])}
		if l := labels[name]; len(l) > 0 {
			slices.Sort(l)
			e.Labels = l
		}
		out = append(out,
			stateWrite{path: base + "/exported", st: e, vrf: name},
			stateWrite{path: base + "/imported", st: &niImportedT{Routes: ygot.Uint32(uint32(rc.vrfRoutes[name]))}, vrf: name})
	}
	return out
}

// speakerWrites is the state of the speaker and of every neighbor.
func speakerWrites(s stateSnapshot, rc ribCounters, counters map[netip.Addr]peerCounters, now time.Time) []stateWrite {
	g := s.global
	out := []stateWrite{{path: s.bgpPath + "/global/state", st: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Global_State{
		As:            ygot.Uint32(g.as),
		RouterId:      ygot.String(g.routerID.String()),
		TotalPaths:    ygot.Uint32(uint32(rc.paths)),
		TotalPrefixes: ygot.Uint32(uint32(rc.routes)),
	}}}
	for addr, n := range s.neighbors {
		out = append(out, neighborWrites(s, addr, n, counters[addr], rc, now)...)
	}
	return out
}

// gobgpCounters returns GoBGP's per-peer counters, read again when they
// are older than gobgpCountersInterval or a session changed state, and
// paths have stopped arriving. While they arrive the cached counters are
// returned and another publication is due once it is quiet; paths that
// arrived after the last read bring another publication once the cache
// is old enough to be read again, so the counters always catch up. sent
// is GoBGP's count only for a transit speaker (it costs a walk of the
// whole table through the export policy); a host sends its own routes
// only.
func (r *Reconciler) gobgpCounters(ctx context.Context, sp *speaker, transit bool) (map[netip.Addr]peerCounters, error) {
	r.mu.Lock()
	due := r.countersFrom != sp || time.Since(r.countersAt) >= gobgpCountersInterval || r.countersStale
	cached, at := r.counters, r.countersAt
	if !due && r.lastPathAt.Load() > at.UnixNano() && !r.countersWake {
		r.countersWake = true
		time.AfterFunc(time.Until(at.Add(gobgpCountersInterval)), func() {
			r.mu.Lock()
			r.countersWake = false
			r.mu.Unlock()
			r.signalState()
		})
	}
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

// neighborWrites is the state of one neighbor. received and installed
// are import's own counts, exact at every publication: received is every
// VPNv4 path the peer announces now (each RD and path identifier, rejected
// ones and ones to our own endpoint included), installed those imported
// into at least one VRF.
func neighborWrites(s stateSnapshot, addr netip.Addr, n neighborSpec, c peerCounters, rc ribCounters, now time.Time) []stateWrite {
	base := neighborPath(s.bgpPath, addr)
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
	out := []stateWrite{{path: base + "/state", st: st, neighbor: addr}}
	if ps.localAddress.IsValid() {
		out = append(out, stateWrite{path: base + "/transport/state", neighbor: addr, st: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_Transport_State{
			LocalAddress: ygot.String(ps.localAddress.String()),
			LocalPort:    ygot.Uint16(uint16(ps.localPort)),
			RemotePort:   ygot.Uint16(uint16(ps.remotePort)),
		}})
	}
	out = append(out, stateWrite{path: base + "/graceful-restart/state", neighbor: addr, st: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_GracefulRestart_State{
		Enabled:         ygot.Bool(n.gr.enabled),
		RestartTime:     ygot.Uint16(n.gr.restartTime),
		StaleRoutesTime: ygot.Uint16(n.gr.staleRoutesTime),
		PeerRestartTime: ygot.Uint16(uint16(c.peerRestartTime)),
	}})
	if n.families&familyVPNv4 != 0 {
		sent := uint32(c.sent)
		if !s.transit {
			sent = 0
			if ps.state == bgp.BGP_FSM_ESTABLISHED {
				sent = s.sent
			}
		}
		out = append(out, stateWrite{path: base + "/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/state", neighbor: addr, st: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State{
			AfiSafiName: gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST,
			Enabled:     ygot.Bool(true),
			Prefixes: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State_Prefixes{
				Received:  ygot.Uint32(uint32(rc.received[addr])),
				Sent:      ygot.Uint32(sent),
				Installed: ygot.Uint32(uint32(rc.installed[addr])),
				Rejected:  ygot.Uint32(uint32(rc.rejected[addr])),
			},
		}})
	}
	return out
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
