package bgp

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestMemoTranslatesOnlyReplacedEntries: through the memo, a
// configuration that shares VRF entries with the previous one reuses
// their translation (the same parsed route targets, not a parse of them
// again), translates the entries a commit replaced afresh, and always
// gives what a translation from scratch gives: pod routes, a static
// route that follows its interface, a VRF changed in a copy.
func TestMemoTranslatesOnlyReplacedEntries(t *testing.T) {
	h := hostConf{as: 65000, routerID: "10.0.9.1", endpoint: "192.0.2.91", vrfs: []vrfConf{
		{name: "red", rd: "10.0.9.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.9.0.0/24", pods: []string{"10.9.0.1"}},
		{name: "blue", rd: "10.0.9.1:2", imp: []string{"65000:2"}, exp: []string{"65000:2"}, pool: "10.9.1.0/24"},
		{name: "green", rd: "10.0.9.1:3", imp: []string{"65000:3"}, exp: []string{"65000:3"}, pool: "10.9.2.0/24", pods: []string{"10.9.2.1"}, statics: []string{"10.99.0.0/16"}},
	}}
	d1 := &gen.Device{}
	h.build(d1)
	var memo vrfMemo
	loc := local{listenPort: -1}
	check := func(d *gen.Device) *intent {
		t.Helper()
		got, err := memo.translate(d, loc, false)
		if err != nil {
			t.Fatal(err)
		}
		want, err := intentOf(d, loc)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Fatalf("memo translation differs from a fresh one (-want +got):\n%s", diff)
		}
		return got
	}
	in1 := check(d1)

	// The next configuration as a commit makes it: entries shared, blue
	// replaced by a changed copy, a pod added to red through an
	// interface, green's static route's interface removed.
	d2 := &gen.Device{}
	*d2 = *d1
	nis := &gen.IsthmusNetworkInstance_NetworkInstances{NetworkInstance: map[string]*niT{}}
	for k, v := range d1.NetworkInstances.NetworkInstance {
		nis.NetworkInstance[k] = v
	}
	d2.NetworkInstances = nis
	blue, err := ygot.DeepCopy(nis.NetworkInstance["blue"])
	if err != nil {
		t.Fatal(err)
	}
	nis.NetworkInstance["blue"] = blue.(*niT)
	nis.NetworkInstance["blue"].Config.ImportRouteTarget = []string{"65000:2", "65000:20"}
	ifs := &gen.IsthmusInterfaces_Interfaces{Interface: map[string]*gen.IsthmusInterfaces_Interfaces_Interface{}}
	for k, v := range d1.Interfaces.Interface {
		if k != "green-pod0" {
			ifs.Interface[k] = v
		}
	}
	pod := ifs.GetOrCreateInterface("red-new").GetOrCreateConfig()
	pod.Name, pod.Type, pod.NetworkInstance, pod.Ipv4Address = ygot.String("red-new"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red"), ygot.String("10.9.0.9/32")
	d2.Interfaces = ifs
	in2 := check(d2)

	if &in2.vrfs["red"].importRTs[0] != &in1.vrfs["red"].importRTs[0] {
		t.Error("red, shared by both configurations, was translated again")
	}
	if len(in2.vrfs["red"].routes) != len(in1.vrfs["red"].routes)+1 {
		t.Errorf("red routes %v, want one more than %v", in2.vrfs["red"].routes, in1.vrfs["red"].routes)
	}
	if len(in1.vrfs["green"].routes) != 2 || len(in2.vrfs["green"].routes) != 0 {
		t.Errorf("green routes %v then %v: want the pod and the static route, then neither", in1.vrfs["green"].routes, in2.vrfs["green"].routes)
	}
	// Validate's translation of a candidate serves its Apply, once.
	v, err := memo.translate(d2, loc, true)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := memo.translate(d2, loc, false); a != v {
		t.Error("the Apply after Validate translated the candidate again")
	}
	if again, _ := memo.translate(d2, loc, false); again == v {
		t.Error("Validate's intent was handed out twice")
	}
	if len(in2.vrfs["blue"].importRTs) != 2 {
		t.Errorf("blue, replaced, kept its old route targets: %v", in2.vrfs["blue"].importRTs)
	}
}
