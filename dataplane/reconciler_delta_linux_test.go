package dataplane

import (
	"fmt"
	"maps"
	"reflect"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestDeltaVisitsOnlyTouchedVRFs: with fifty VRFs configured, a commit
// that adds a VRF, changes one, gives one a static route, or removes one,
// or that removes a pod, looks at the network instances it touches only
// (counted, not timed), and leaves the forwarder and the reconciler
// where applying the whole configuration would: the same intent, local
// routes and labels.
func TestDeltaVisitsOnlyTouchedVRFs(t *testing.T) {
	const vrfs = 50
	a, _, _ := newCoreHosts(t, func(i int, d *gen.Device) {
		if i != 0 {
			return
		}
		for n := range vrfs {
			name := fmt.Sprintf("v%d", n)
			c := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance(name).GetOrCreateConfig()
			c.Name, c.Type = ygot.String(name), gen.IsthmusTypes_NetworkInstanceType_L3VRF
			c.RouteDistinguisher = ygot.String(fmt.Sprintf("65000:%d", 100+n))
			c.ImportRouteTarget, c.ExportRouteTarget = []string{fmt.Sprintf("65000:%d", 100+n)}, []string{fmt.Sprintf("65000:%d", 100+n)}
			if n%2 == 1 {
				c.LabelAllocationMode = gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX
			}
		}
	})
	a.checkAgainstFull(t, "start")
	commit := func(what string, edit func(d *gen.Device)) {
		t.Helper()
		before := a.rec.visits.Load()
		a.commit(t, func(d *gen.Device) error { edit(d); return nil })
		if got := a.rec.visits.Load() - before; got > 2 {
			t.Errorf("%s: the dataplane looked at %d network instances, want at most 2", what, got)
		}
		a.checkAgainstFull(t, what)
	}
	nis := func(d *gen.Device) map[string]*niT { return d.NetworkInstances.NetworkInstance }
	commit("add a VRF", func(d *gen.Device) {
		c := d.NetworkInstances.GetOrCreateNetworkInstance("new").GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String("new"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("65000:999")
	})
	commit("change a VRF's route targets", func(d *gen.Device) {
		nis(d)["v3"].Config.ImportRouteTarget = []string{"65001:3"}
	})
	routes := a.rec.Dataplane().Routes()
	commit("give red a static route to its pod", func(d *gen.Device) {
		st := nis(d)["red"].GetOrCreateStaticRoutes().GetOrCreateStatic("10.99.0.0/16").GetOrCreateConfig()
		st.Prefix, st.Interface = ygot.String("10.99.0.0/16"), ygot.String(a.pod.hostIf)
	})
	if n := a.rec.Dataplane().Routes(); n != routes+1 {
		t.Errorf("%d routes after a static route was added, want %d", n, routes+1)
	}
	commit("remove a VRF", func(d *gen.Device) { delete(nis(d), "v4") })
	commit("remove the static route", func(d *gen.Device) { nis(d)["red"].StaticRoutes = nil })
	commit("remove the pod", func(d *gen.Device) { delete(d.Interfaces.Interface, a.pod.hostIf) })
	if n := a.rec.Dataplane().Routes(); n != routes-1 {
		t.Errorf("%d routes after the pod went, want %d", n, routes-1)
	}
}

// checkAgainstFull compares what the reconciler applied with what
// applying the whole running configuration asks for.
func (h *coreHost) checkAgainstFull(t *testing.T, what string) {
	t.Helper()
	want, err := intentOf(h.core.Config())
	if err != nil {
		t.Fatal(err)
	}
	r := h.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	if !reflect.DeepEqual(want, r.applied) {
		t.Errorf("%s: applied intent %+v, want %+v", what, r.applied, want)
	}
	local := map[RouteKey]int{}
	for k, ifname := range want.localRoutes() {
		if i, ok := r.ifindex[ifname]; ok {
			local[k] = i
		}
	}
	if !maps.Equal(local, r.local) {
		t.Errorf("%s: local routes %v, want %v", what, r.local, local)
	}
	labels := map[labelTarget]bool{}
	for lt := range want.labelTargets() {
		if _, ok := r.ifindex[lt.Interface]; ok || !lt.Prefix.IsValid() {
			labels[lt] = true
		}
	}
	have := map[labelTarget]bool{}
	for lt := range r.labels {
		have[lt] = true
	}
	if !maps.Equal(labels, have) {
		t.Errorf("%s: labels %v, want %v", what, have, labels)
	}
	vrfPods, podRoute := map[string]map[string]bool{}, map[RouteKey]string{}
	for name, p := range want.Pods {
		if vrfPods[p.VRF] == nil {
			vrfPods[p.VRF] = map[string]bool{}
		}
		vrfPods[p.VRF][name] = true
		if p.Prefix.IsValid() {
			podRoute[RouteKey{VRF: p.VRF, Prefix: p.Prefix}] = name
		}
	}
	if !reflect.DeepEqual(vrfPods, r.vrfPods) || !maps.Equal(podRoute, r.podRoute) {
		t.Errorf("%s: pod indexes %v %v, want %v %v", what, r.vrfPods, r.podRoute, vrfPods, podRoute)
	}
}
