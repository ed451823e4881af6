package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

var _ nos.DeltaReconciler = (*Reconciler)(nil)

// A commit that adds, changes or removes L3VRFs and pod interfaces is
// applied from its delta (nos.Delta): the intent is patched for the
// entries it names, and only their routes, labels and interfaces are
// programmed (convergeScope), so a commit that touches one VRF costs one
// VRF however many there are. What the dataplane compiles across
// entries is applied in full, as Apply does: a commit that changes the
// tunnel, ACLs, address groups, tag keys or CNI namespaces, a VRF with
// services, external connectivity or a tunnel ingress ACL, a VRF's label
// mode or encapsulation, a pod with ACLs or tags or in such a VRF, or the
// underlay interface. The retry loop still converges everything
// (converge), and Start applies in full.

type (
	niT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance
	ifT = gen.IsthmusInterfaces_Interfaces_Interface
)

// niByDelta reports whether a network instance entry (nil: absent) can be
// applied by delta: it has no services, no external connectivity and no
// tunnel ingress ACL, which the dataplane compiles across VRFs.
func niByDelta(ni *niT) bool {
	if ni == nil {
		return true
	}
	c := ni.GetConfig()
	return len(nos.Services(ni)) == 0 && ni.GetExternal() == nil &&
		len(c.GetTunnelIngressAclSet()) == 0 && c.GetTunnelIngressDefaultAction() == gen.IsthmusAcl_AclAction_UNSET
}

// ifByDelta reports whether an interface entry (nil: absent) can be
// applied by delta: no ACLs, no tags (policy selects pods by them), not a
// pod while some ACL entry of d selects by tags (`!key` and `key!=v` match
// an untagged pod too), and its VRF in d can be applied by delta too.
func ifByDelta(ifc *ifT, d *gen.Device) bool {
	if ifc == nil {
		return true
	}
	if ifc.GetAcl() != nil || (ifc.GetTags() != nil && len(ifc.GetTags().Tag) > 0) {
		return false
	}
	if isPod(ifc) && selectsByTags(d) {
		return false
	}
	vrf := ifc.GetConfig().GetNetworkInstance()
	return vrf == "" || niByDelta(nos.NetworkInstances(d)[vrf])
}

// byDelta reports whether delta d from old to intended can be applied by
// delta (old nil: only intended's side is checked, for validation).
func (r *Reconciler) byDelta(old, intended *gen.Device, d nos.Delta) bool {
	if d.Tunnel() || d.Others() {
		return false
	}
	underlay := intended.GetTunnel().GetConfig().GetUnderlayInterface()
	changed, removed := d.NetworkInstances()
	for _, names := range [][]string{changed, removed} {
		for _, name := range names {
			n := nos.NetworkInstances(intended)[name]
			if !niByDelta(n) {
				return false
			}
			if old == nil {
				continue
			}
			o := nos.NetworkInstances(old)[name]
			if !niByDelta(o) {
				return false
			}
			if isL3VRF(o) && isL3VRF(n) {
				ov, _ := vrfIntentOf(name, o, map[RouteKey]string{})
				nv, _ := vrfIntentOf(name, n, map[RouteKey]string{})
				if ov != nv {
					return false // every label of the VRF changes
				}
			}
		}
	}
	changed, removed = d.Interfaces()
	for _, names := range [][]string{changed, removed} {
		for _, name := range names {
			if name == underlay || !ifByDelta(nos.Interfaces(intended)[name], intended) {
				return false
			}
			if old != nil && !ifByDelta(nos.Interfaces(old)[name], old) {
				return false
			}
		}
	}
	return true
}

func isL3VRF(ni *niT) bool {
	return ni != nil && ni.GetConfig().GetType() == gen.IsthmusTypes_NetworkInstanceType_L3VRF
}

func isPod(ifc *ifT) bool {
	return ifc != nil && ifc.GetConfig().GetType() == gen.IsthmusTypes_InterfaceType_POD
}

// ValidateDelta implements nos.DeltaReconciler: it checks the entries d
// changes as Validate checks the whole configuration.
func (r *Reconciler) ValidateDelta(intended *gen.Device, d nos.Delta) error {
	if !r.byDelta(nil, intended, d) {
		return r.validate(intended, &d)
	}
	r.mu.Lock()
	tunnel := r.applied.Tunnel
	r.mu.Unlock()
	nis := nos.NetworkInstances(intended)
	isVRF := func(name string) bool { return isL3VRF(nis[name]) }
	changed, removed := d.NetworkInstances()
	for _, name := range changed {
		r.visits.Add(1)
		if ni := nis[name]; isL3VRF(ni) {
			if _, err := vrfIntentOf(name, ni, map[RouteKey]string{}); err != nil {
				return err
			}
		}
	}
	gone := map[string]bool{}
	for _, name := range removed {
		r.visits.Add(1)
		gone[name] = true
	}
	ifs := nos.Interfaces(intended)
	chIf, rmIf := d.Interfaces()
	moved := map[string]bool{}
	for _, name := range rmIf {
		moved[name] = true
	}
	pods := map[string]podIntent{}
	vrfs := map[string]vrfIntent{}
	for _, name := range chIf {
		moved[name] = true
		if !isPod(ifs[name]) {
			continue
		}
		p, err := podIntentOf(name, ifs[name], isVRF)
		if err != nil {
			return err
		}
		pods[name] = p
		if v, err := vrfIntentOf(p.VRF, nis[p.VRF], map[RouteKey]string{}); err == nil {
			vrfs[p.VRF] = v
		}
	}
	// A VRF goes only with its pods.
	r.mu.Lock()
	for name := range gone {
		for ifname := range r.vrfPods[name] {
			if !moved[ifname] {
				r.mu.Unlock()
				return fmt.Errorf("interfaces/interface[name=%s]/config/network-instance: %q is not a network instance", ifname, name)
			}
		}
	}
	r.mu.Unlock()
	if err := r.checkPodMACs(intended, chIf, false); err != nil {
		return err
	}
	return intent{Tunnel: tunnel, Pods: pods, VRFs: vrfs}.validate()
}

// ApplyDelta implements nos.DeltaReconciler: it patches the applied
// intent with the entries d changes and programs only those.
func (r *Reconciler) ApplyDelta(ctx context.Context, old, intended *gen.Device, d nos.Delta) error {
	if !r.byDelta(old, intended, d) {
		return r.apply(ctx, old, intended, &d)
	}
	r.mu.Lock()
	if r.applied.VRFs == nil {
		r.mu.Unlock()
		return r.Apply(ctx, old, intended) // nothing applied in full yet
	}
	defer r.mu.Unlock()
	if r.dp == nil {
		return errors.New("apply dataplane: not started")
	}
	sc := scope{keys: map[RouteKey]struct{}{}, labels: map[labelTarget]struct{}{}, ifaces: map[string]struct{}{}}
	want := r.applied
	changed, removed := d.NetworkInstances()
	for _, names := range [][]string{changed, removed} {
		for _, name := range names {
			r.visits.Add(1)
			r.patchVRF(&want, &sc, name, nos.NetworkInstances(old)[name], nos.NetworkInstances(intended)[name])
		}
	}
	chIf, rmIf := d.Interfaces()
	nis := nos.NetworkInstances(intended)
	for _, names := range [][]string{chIf, rmIf} {
		for _, name := range names {
			if err := r.patchPod(&want, &sc, name, nos.Interfaces(intended)[name], func(vrf string) bool { return isL3VRF(nis[vrf]) }); err != nil {
				return err
			}
		}
	}
	r.applied = want
	err := r.convergeScope(want, sc)
	r.releaseRemoved(intended, changed, removed) // their ids are released in sync
	r.sync()                                     // learnt routes that local ones hid or uncovered
	return err
}

// scope is what a delta can change: route keys, label owners and pod
// interfaces.
type scope struct {
	keys   map[RouteKey]struct{}
	labels map[labelTarget]struct{}
	ifaces map[string]struct{}
}

// patchVRF replaces VRF name's part of want (its intent and static
// routes) by what entry n asks (nil or not an L3VRF: none), given its
// entry o before, and adds what it touches to sc. r.mu is held.
func (r *Reconciler) patchVRF(want *intent, sc *scope, name string, o, n *niT) {
	sc.labels[labelTarget{VRF: name}] = struct{}{}
	if isL3VRF(o) {
		statics := map[RouteKey]string{}
		vrfIntentOf(name, o, statics) // translated before, without error
		for k, ifname := range statics {
			delete(want.Statics, k)
			sc.keys[k] = struct{}{}
			sc.labels[labelTarget{VRF: name, Prefix: k.Prefix, Interface: ifname}] = struct{}{}
		}
	}
	delete(want.VRFs, name)
	if !isL3VRF(n) {
		return
	}
	statics := map[RouteKey]string{}
	v, _ := vrfIntentOf(name, n, statics) // validated
	want.VRFs[name] = v
	for k, ifname := range statics {
		want.Statics[k] = ifname
		sc.keys[k] = struct{}{}
		sc.labels[labelTarget{VRF: name, Prefix: k.Prefix, Interface: ifname}] = struct{}{}
	}
}

// patchPod replaces pod interface name's part of want by what entry ifc
// asks (nil or not a pod: none) and adds what it touches to sc. r.mu is
// held.
func (r *Reconciler) patchPod(want *intent, sc *scope, name string, ifc *ifT, isVRF func(string) bool) error {
	sc.ifaces[name] = struct{}{}
	// Static routes through the interface follow it: they are programmed
	// once it is attached and go when it is detached.
	for k, ifname := range want.Statics {
		if ifname == name {
			sc.keys[k] = struct{}{}
			sc.labels[labelTarget{VRF: k.VRF, Prefix: k.Prefix, Interface: name}] = struct{}{}
		}
	}
	if p, ok := want.Pods[name]; ok {
		r.unindexPod(name, p)
		delete(want.Pods, name)
		sc.labels[labelTarget{VRF: p.VRF}] = struct{}{}
		if p.Prefix.IsValid() {
			sc.keys[RouteKey{VRF: p.VRF, Prefix: p.Prefix}] = struct{}{}
			sc.labels[labelTarget{VRF: p.VRF, Prefix: p.Prefix, Interface: name}] = struct{}{}
		}
	}
	if !isPod(ifc) {
		return nil
	}
	p, err := podIntentOf(name, ifc, isVRF)
	if err != nil {
		return err
	}
	want.Pods[name] = p
	r.indexPod(name, p)
	if p.Prefix.IsValid() {
		sc.keys[RouteKey{VRF: p.VRF, Prefix: p.Prefix}] = struct{}{}
		sc.labels[labelTarget{VRF: p.VRF, Prefix: p.Prefix, Interface: name}] = struct{}{}
	}
	return nil
}

// indexPod records a pod in r.vrfPods and r.podRoute; r.mu is held.
func (r *Reconciler) indexPod(name string, p podIntent) {
	if r.vrfPods[p.VRF] == nil {
		r.vrfPods[p.VRF] = map[string]bool{}
	}
	r.vrfPods[p.VRF][name] = true
	if p.Prefix.IsValid() {
		r.podRoute[RouteKey{VRF: p.VRF, Prefix: p.Prefix}] = name
	}
}

// unindexPod forgets a pod in r.vrfPods and r.podRoute; r.mu is held.
func (r *Reconciler) unindexPod(name string, p podIntent) {
	if m := r.vrfPods[p.VRF]; m != nil {
		delete(m, name)
		if len(m) == 0 {
			delete(r.vrfPods, p.VRF)
		}
	}
	k := RouteKey{VRF: p.VRF, Prefix: p.Prefix}
	if r.podRoute[k] == name {
		delete(r.podRoute, k)
	}
}

// indexPods rebuilds r.vrfPods and r.podRoute from want, after a full
// Apply; r.mu is held.
func (r *Reconciler) indexPods(want intent) {
	clear(r.vrfPods)
	clear(r.podRoute)
	for name, p := range want.Pods {
		r.indexPod(name, p)
	}
}

// localRoute returns the interface a local route of want goes to: a
// pod's own address, else a static route's interface (as localRoutes).
// r.mu is held.
func (r *Reconciler) localRoute(want intent, k RouteKey) (string, bool) {
	if ifname, ok := r.podRoute[k]; ok {
		return ifname, true
	}
	ifname, ok := want.Statics[k]
	return ifname, ok
}

// wantsLabel reports whether want needs label owner lt (as labelTargets).
// r.mu is held.
func (r *Reconciler) wantsLabel(want intent, lt labelTarget) bool {
	v, ok := want.VRFs[lt.VRF]
	if !ok {
		return false
	}
	if !lt.Prefix.IsValid() {
		return !v.PerPrefix || want.ServiceVRFs[lt.VRF]
	}
	if !v.PerPrefix {
		return false
	}
	if p, ok := want.Pods[lt.Interface]; ok && p.VRF == lt.VRF && p.Prefix == lt.Prefix {
		return true
	}
	return want.Statics[RouteKey{VRF: lt.VRF, Prefix: lt.Prefix}] == lt.Interface
}

// convergeScope is converge for the routes, labels and pod interfaces of
// sc only. r.mu is held.
func (r *Reconciler) convergeScope(want intent, sc scope) error {
	if err := r.podLinks(want, sc.ifaces, false); err != nil {
		return err
	}
	var detach []string
	for ifname := range sc.ifaces {
		p, ok := r.attached[ifname]
		if !ok {
			continue
		}
		if w, ok := want.Pods[ifname]; !ok || w.VRF != p.VRF || w.PeerMAC != p.PeerMAC {
			detach = append(detach, ifname)
		}
	}
	going := func(ifname string) bool {
		for _, d := range detach {
			if d == ifname {
				return true
			}
		}
		return false
	}
	var gone []RouteKey
	for k := range sc.keys {
		i, ok := r.local[k]
		if !ok {
			continue
		}
		if w, ok := r.localRoute(want, k); !ok || going(w) || r.ifindex[w] != i {
			gone = append(gone, k)
		}
	}
	var errs []error
	for k, err := range r.deleteRoutes(gone) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.local, k)
		r.dirty[k] = struct{}{}
		r.aftTouch(k)
	}
	for lt := range sc.labels {
		label, ok := r.labels[lt]
		if !ok || (r.wantsLabel(want, lt) && !going(lt.Interface)) {
			continue
		}
		if err := r.dp.DeleteLabel(label); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(r.labels, lt)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := r.detach(detach); err != nil {
		return err
	}
	for ifname := range sc.ifaces {
		delete(r.waiting, ifname)
		p, ok := want.Pods[ifname]
		if !ok || p.PeerMAC == "" {
			continue
		}
		if err := r.attachPod(ifname, p); err != nil {
			return err
		}
	}
	var routes []Route
	for k := range sc.keys {
		ifname, ok := r.localRoute(want, k)
		if !ok {
			continue
		}
		r.known[k] = struct{}{}
		i, ok := r.ifindex[ifname]
		if !ok || r.local[k] == i {
			continue
		}
		routes = append(routes, Route{RouteKey: k, Interface: i})
	}
	for k, err := range r.setRoutes(routes) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ifname, _ := r.localRoute(want, k)
		r.local[k] = r.ifindex[ifname]
		delete(r.remote, k)
		delete(r.dirty, k)
		r.aftTouch(k)
	}
	labels := map[labelTarget]struct{}{}
	for lt := range sc.labels {
		if r.wantsLabel(want, lt) {
			labels[lt] = struct{}{}
		}
	}
	errs = append(errs, r.installLabels(labels), r.podLinks(want, sc.ifaces, true))
	return errors.Join(errs...)
}

// detach takes the pod interfaces named off the forwarder and forgets
// them. r.mu is held.
func (r *Reconciler) detach(names []string) error {
	for _, ifname := range names {
		if err := r.dp.DetachInterface(r.ifindex[ifname]); err != nil {
			return err
		}
		delete(r.ifindex, ifname)
		delete(r.attached, ifname)
	}
	return nil
}

// attachPod attaches pod interface ifname as p asks, unless it is
// attached already; an interface not there yet waits in r.waiting and is
// attached when it appears. r.mu is held.
func (r *Reconciler) attachPod(ifname string, p podIntent) error {
	if _, ok := r.attached[ifname]; ok {
		return nil
	}
	i, err := r.dp.LinkIndex(ifname)
	if err != nil {
		r.waiting[ifname] = struct{}{}
		return nil
	}
	mac, _ := net.ParseMAC(p.PeerMAC)
	if err := r.dp.AttachInterface(Interface{Index: i, VRF: p.VRF, PeerMAC: mac}); err != nil {
		return err
	}
	r.ifindex[ifname], r.attached[ifname] = i, p
	return nil
}
