package bgp

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

var _ nos.DeltaReconciler = (*Reconciler)(nil)

// view is the translation of the configuration last applied, kept so that
// a commit is validated and applied from the entries it changes
// (nos.Delta): only the VRFs a changed entry can affect are translated,
// exported, imported and published again. A full Apply (at start) builds
// it; a delta patches it. Guarded by the Reconciler's mu.
type view struct {
	vrfs     map[string]vrfSpec // the L3VRFs, as r.applied.vrfs
	endpoint netip.Addr
	// enabled says BGP is configured (as and router-id): without it
	// nothing is exported and no tunnel source is needed. It lives in
	// the default instance, whose changes are applied in full.
	enabled bool
	// others are the network instances that are not L3VRFs (the default
	// one, which holds BGP itself): a commit that changes one is applied
	// in full.
	others map[string]bool
	// ifVRF is the network instance of every interface configured in one,
	// and ifs the same by VRF: a VRF's pod routes, static routes, services
	// and floating IPs depend on its interfaces.
	ifVRF map[string]string
	ifs   map[string]map[string]bool
	// rds are the L3VRFs with each route distinguisher (at most one once
	// validated), for the uniqueness check.
	rds map[rd]map[string]bool
	// floatInto are, per VRF, the VRFs whose floating IPs are advertised
	// in it (floating.go).
	floatInto map[string]map[string]bool
	// exportedIn are the prefixes exported under each VRF's name (the
	// keys of Reconciler.exported).
	exportedIn map[string]map[netip.Prefix]bool
}

// newView indexes configuration d, which translates to in.
func newView(d *gen.Device, in *intent) *view {
	v := &view{
		vrfs: in.vrfs, endpoint: in.endpoint, enabled: in.enabled(),
		others: map[string]bool{}, ifVRF: map[string]string{}, ifs: map[string]map[string]bool{},
		rds: map[rd]map[string]bool{}, floatInto: map[string]map[string]bool{},
		exportedIn: map[string]map[netip.Prefix]bool{},
	}
	for name, ni := range nos.NetworkInstances(d) {
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			v.others[name] = true
		}
	}
	for name, ifc := range nos.Interfaces(d) {
		v.moveInterface(name, ifc.GetConfig().GetNetworkInstance())
	}
	for name, s := range in.vrfs {
		v.index(name, s)
	}
	return v
}

// moveInterface records that interface name is now in VRF vrf ("": in
// none, or gone).
func (v *view) moveInterface(name, vrf string) {
	if old, ok := v.ifVRF[name]; ok {
		delete(v.ifs[old], name)
		if len(v.ifs[old]) == 0 {
			delete(v.ifs, old)
		}
		delete(v.ifVRF, name)
	}
	if vrf == "" {
		return
	}
	v.ifVRF[name] = vrf
	if v.ifs[vrf] == nil {
		v.ifs[vrf] = map[string]bool{}
	}
	v.ifs[vrf][name] = true
}

// index adds VRF name's RD and floating IP target to the indexes.
func (v *view) index(name string, s vrfSpec) {
	if s.rd != 0 {
		addTo(v.rds, s.rd, name)
	}
	if s.floatingExt != "" {
		addTo(v.floatInto, s.floatingExt, name)
	}
}

// unindex removes VRF name's RD and floating IP target from the indexes.
func (v *view) unindex(name string, s vrfSpec) {
	removeFrom(v.rds, s.rd, name)
	removeFrom(v.floatInto, s.floatingExt, name)
}

func addTo[K comparable](m map[K]map[string]bool, k K, name string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][name] = true
}

func removeFrom[K comparable](m map[K]map[string]bool, k K, name string) {
	if s := m[k]; s != nil {
		delete(s, name)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// patch is what a commit changes of the view: computed by ValidateDelta
// (which changes nothing) and applied by ApplyDelta.
type patch struct {
	set    map[string]vrfSpec // L3VRFs added or changed, translated
	del    []string           // L3VRFs removed (or no longer L3VRFs)
	moves  map[string]string  // interface → its VRF now ("" for none)
	groups []string           // VRFs whose exports are computed again, sorted
}

// deltaPending is the patch ValidateDelta computed for a candidate, for
// the ApplyDelta of the same candidate.
type deltaPending struct {
	mu   sync.Mutex // guards p, for
	p    *patch
	from *gen.Device
}

// fullNeeded reports whether a commit with delta d must be applied in
// full: it changes the tunnel (every export's next hop) or a network
// instance that is not an L3VRF (BGP itself). r.mu is held.
func (r *Reconciler) fullNeeded(intended *gen.Device, d nos.Delta) bool {
	if r.view == nil || d.Tunnel() {
		return true
	}
	changed, removed := d.NetworkInstances()
	nis := nos.NetworkInstances(intended)
	for _, name := range changed {
		if r.view.others[name] || nis[name].GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			return true
		}
	}
	for _, name := range removed {
		if r.view.others[name] {
			return true
		}
	}
	return false
}

// ValidateDelta implements nos.DeltaReconciler: it translates only the
// VRFs the changed entries can affect and checks them as Validate does.
func (r *Reconciler) ValidateDelta(intended *gen.Device, d nos.Delta) error {
	r.mu.Lock()
	if r.fullNeeded(intended, d) {
		r.mu.Unlock()
		return r.Validate(intended)
	}
	p, err := r.patchOf(intended, d)
	endpoint, enabled := r.view.endpoint, r.view.enabled
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if enabled && !endpoint.IsValid() {
		for _, name := range slices.Sorted(mapsKeys(p.set)) {
			if v := p.set[name]; len(v.exportRTs) > 0 && len(v.routes) > 0 {
				return invalid("/tunnel/config/source-address", "required to export the routes of vrf %q", name)
			}
		}
	}
	r.pending.mu.Lock()
	r.pending.p, r.pending.from = p, intended
	r.pending.mu.Unlock()
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// patchOf translates the VRFs that delta d of intended can affect: the
// network instances it changes or removes, and the VRFs its changed or
// removed interfaces were or are in. r.mu is held.
func (r *Reconciler) patchOf(intended *gen.Device, d nos.Delta) (*patch, error) {
	v := r.view
	p := &patch{set: map[string]vrfSpec{}, moves: map[string]string{}}
	affected := map[string]bool{}
	changed, removed := d.NetworkInstances()
	for _, name := range changed {
		affected[name] = true
	}
	for _, name := range removed {
		affected[name] = true
	}
	ifs := nos.Interfaces(intended)
	chIf, rmIf := d.Interfaces()
	for _, name := range chIf {
		p.moves[name] = ifs[name].GetConfig().GetNetworkInstance()
	}
	for _, name := range rmIf {
		p.moves[name] = ""
	}
	for name, to := range p.moves {
		affected[v.ifVRF[name]], affected[to] = true, true
	}
	delete(affected, "")
	nis := nos.NetworkInstances(intended)
	groups := map[string]bool{}
	for name := range affected {
		r.visits.Add(1)
		groups[name] = true
		if old, ok := v.vrfs[name]; ok && old.floatingExt != "" {
			groups[old.floatingExt] = true
		}
		ni := nis[name]
		if ni == nil || ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			if _, ok := v.vrfs[name]; ok {
				p.del = append(p.del, name)
			}
			continue
		}
		s, err := r.translateVRF(name, ni, intended, p.moves)
		if err != nil {
			return nil, err
		}
		if s.floatingExt != "" {
			groups[s.floatingExt] = true
		}
		p.set[name] = s
	}
	sort.Strings(p.del)
	// Route distinguishers stay unique: against the VRFs this commit does
	// not touch (by the index) and among those it does.
	names := slices.Sorted(mapsKeys(p.set))
	mine := map[rd]string{}
	for _, name := range names {
		s := p.set[name]
		if s.rd == 0 {
			continue
		}
		other := mine[s.rd]
		for o := range v.rds[s.rd] {
			if !affected[o] && (other == "" || o < other) {
				other = o
			}
		}
		if other != "" {
			return nil, invalid(niPath(name)+"/config/route-distinguisher", "%s is also the RD of %q", s.rd, other)
		}
		mine[s.rd] = name
	}
	p.groups = slices.Sorted(mapsKeys(groups))
	return p, nil
}

// translateVRF is the full translation of one L3VRF (vrfOf, pod routes,
// services, floating IPs), reading only its own interfaces: those the
// view has in it, less those moves takes away, plus those it brings.
func (r *Reconciler) translateVRF(name string, ni *niT, d *gen.Device, moves map[string]string) (vrfSpec, error) {
	s, err := vrfOf(name, ni, d)
	if err != nil {
		return s, err
	}
	var members []string
	for ifname := range r.view.ifs[name] {
		if _, moved := moves[ifname]; !moved {
			members = append(members, ifname)
		}
	}
	for ifname, to := range moves {
		if to == name {
			members = append(members, ifname)
		}
	}
	ifs := nos.Interfaces(d)
	local := map[netip.Addr]bool{}
	for _, ifname := range members {
		ifc := ifs[ifname]
		c := ifc.GetConfig()
		if c.GetType() != gen.IsthmusTypes_InterfaceType_POD || c.GetIpv4Address() == "" || (c.Enabled != nil && !*c.Enabled) {
			continue
		}
		pfx, err := netip.ParsePrefix(c.GetIpv4Address())
		if err != nil || !pfx.Addr().Is4() {
			return s, invalid("/interfaces/interface[name="+ifname+"]/config/ipv4-address", "not an IPv4 prefix: %q", c.GetIpv4Address())
		}
		s.routes = append(s.routes, netip.PrefixFrom(pfx.Addr(), 32))
		if _, a, ok := localPod(ifc); ok {
			local[a] = true
		}
	}
	slices.SortFunc(s.routes, comparePrefix)
	s.routes = slices.Compact(s.routes)
	if s.services, err = vrfServices(name, ni, local); err != nil {
		return s, err
	}
	s.floating, s.floatingExt = vrfFloating(ni, local)
	return s, nil
}

// ApplyDelta implements nos.DeltaReconciler: it applies the VRFs delta d
// can affect (their import, exports and labels) and leaves the others
// alone. A commit that changes the tunnel or BGP itself is applied in
// full, as at start.
func (r *Reconciler) ApplyDelta(ctx context.Context, old, intended *gen.Device, d nos.Delta) error {
	r.mu.Lock()
	if r.core == nil {
		r.mu.Unlock()
		return errors.New("bgp: apply before start")
	}
	if r.fullNeeded(intended, d) {
		r.mu.Unlock()
		return r.Apply(ctx, old, intended)
	}
	defer r.mu.Unlock()
	r.pending.mu.Lock()
	p := r.pending.p
	if r.pending.from != intended {
		p = nil
	}
	r.pending.p, r.pending.from = nil, nil
	r.pending.mu.Unlock()
	if p == nil {
		// A rollback, or a commit validated in full: translate now.
		var err error
		if p, err = r.patchOf(intended, d); err != nil {
			return err
		}
	}
	defer r.signalFlush()
	defer r.signalState()
	v := r.view
	for _, name := range p.del {
		v.unindex(name, v.vrfs[name])
		delete(v.vrfs, name)
		r.stateDirty[name] = true
	}
	for name, s := range p.set {
		if o, ok := v.vrfs[name]; ok {
			v.unindex(name, o)
		}
		v.vrfs[name] = s
		v.index(name, s)
		r.stateDirty[name] = true
	}
	for ifname, to := range p.moves {
		v.moveInterface(ifname, to)
	}
	if r.applied != nil {
		r.applied.vrfs = v.vrfs
	}
	r.rib.patchVRFs(p.set, p.del)
	var errs []error
	if r.sp != nil && r.applied != nil && r.applied.enabled() {
		errs = append(errs, r.exportGroups(p.groups))
	}
	errs = append(errs, r.releaseVRFLabels(p))
	return errors.Join(errs...)
}

// exportGroups advertises and withdraws the routes exported under the
// names of groups, computed from the view. r.mu is held.
func (r *Reconciler) exportGroups(groups []string) error {
	v := r.view
	in := &intent{vrfs: v.vrfs, endpoint: v.endpoint}
	labels := r.core.Labels()
	label := func(vrf string, mode labelMode, p netip.Prefix) (uint32, error) {
		if mode == labelPerPrefix {
			return labels.Prefix(vrf, p)
		}
		return labels.VRF(vrf)
	}
	var add, del []exportRoute
	want := map[string]map[exportKey]exportRoute{}
	for _, g := range groups {
		out := map[exportKey]exportRoute{}
		if v.endpoint.IsValid() {
			for _, f := range slices.Sorted(mapsKeys(v.floatInto[g])) {
				if err := floatingExports(out, in, v.vrfs[f], label); err != nil {
					return err
				}
			}
			if s, ok := v.vrfs[g]; ok {
				if err := floatingExports(out, in, s, label); err != nil {
					return err
				}
				if err := vrfExports(out, in, s, label); err != nil {
					return err
				}
			}
		}
		for k := range out {
			if k.vrf != g {
				delete(out, k)
			}
		}
		have := map[exportKey]exportRoute{}
		for pfx := range v.exportedIn[g] {
			k := exportKey{g, pfx}
			have[k] = r.exported[k]
		}
		a, d := exportDiff(have, out)
		add, del = append(add, a...), append(del, d...)
		want[g] = out
	}
	if len(add)+len(del) > 0 {
		r.advertisedAt = time.Now()
		if err := r.sp.advertise(add, del); err != nil {
			return err
		}
	}
	for g, out := range want {
		for pfx := range v.exportedIn[g] {
			delete(r.exported, exportKey{g, pfx})
		}
		delete(v.exportedIn, g)
		for k, e := range out {
			r.exported[k] = e
			addPrefix(v.exportedIn, g, k.prefix)
		}
		r.stateDirty[g] = true
	}
	return nil
}

func addPrefix(m map[string]map[netip.Prefix]bool, vrf string, p netip.Prefix) {
	if m[vrf] == nil {
		m[vrf] = map[netip.Prefix]bool{}
	}
	m[vrf][p] = true
}

// releaseVRFLabels frees the labels of the VRFs p removes and the
// per-prefix labels of the VRFs it changes that no route needs any more
// (releaseLabels, for those VRFs only). r.mu is held.
func (r *Reconciler) releaseVRFLabels(p *patch) error {
	labels := r.core.Labels()
	var errs []error
	for _, name := range p.del {
		if _, ok := r.view.vrfs[name]; !ok {
			errs = append(errs, labels.ReleaseVRF(name))
		}
	}
	for name, v := range p.set {
		for _, o := range labels.OfVRF(name) {
			if o.Prefix.IsValid() && (v.labelMode != labelPerPrefix || !hasRoute(v, o.Prefix)) {
				errs = append(errs, labels.ReleasePrefix(name, o.Prefix))
			}
		}
	}
	return errors.Join(errs...)
}
