package nos

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/isthmus-net/isthmus/gen"
)

func device(t *testing.T, js string) *gen.Device {
	t.Helper()
	d := &gen.Device{}
	if err := gen.Unmarshal([]byte(js), d); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	return d
}

func vrfs(entries string) string {
	return `{"isthmus-network-instance:network-instances":{"network-instance":[` + entries + `]}}`
}

func vrf(name, descr string) string {
	s := `{"name":"` + name + `","config":{"name":"` + name + `","type":"L3VRF"`
	if descr != "" {
		s += `,"description":"` + descr + `"`
	}
	return s + `}}`
}

// TestRevertChanges: a rollback undoes exactly the commit's changes (a
// leaf changed, an entry added, an entry removed, a container added) and
// keeps what was changed after it, even inside an entry it touched.
func TestRevertChanges(t *testing.T) {
	before := device(t, vrfs(vrf("red", "a")+","+vrf("blue", "")))
	after := device(t, `{"isthmus-network-instance:network-instances":{"network-instance":[`+vrf("red", "b")+","+vrf("green", "")+`]},
	  "isthmus-tunnel:tunnel":{"config":{"udp-port":6635}}}`)
	// Since the commit: red got an RD, a pod interface came.
	cur := device(t, `{"isthmus-network-instance:network-instances":{"network-instance":[
	    {"name":"red","config":{"name":"red","type":"L3VRF","description":"b","route-distinguisher":"65000:1"}},`+vrf("green", "")+`]},
	  "isthmus-tunnel:tunnel":{"config":{"udp-port":6635}},
	  "isthmus-interfaces:interfaces":{"interface":[{"name":"pod1","config":{"name":"pod1","type":"POD"}}]}}`)
	want := device(t, `{"isthmus-network-instance:network-instances":{"network-instance":[
	    {"name":"red","config":{"name":"red","type":"L3VRF","description":"a","route-distinguisher":"65000:1"}},`+vrf("blue", "")+`]},
	  "isthmus-interfaces:interfaces":{"interface":[{"name":"pod1","config":{"name":"pod1","type":"POD"}}]}}`)
	revertChanges(cur, device(t, vrfs(vrf("red", "a")+","+vrf("blue", ""))), after)
	if diff := cmp.Diff(want, cur); diff != "" {
		t.Fatalf("reverted (-want +got):\n%s", diff)
	}
	// Reverting a commit that changed nothing changes nothing.
	same := device(t, vrfs(vrf("red", "a")))
	revertChanges(same, before, before)
	if diff := cmp.Diff(device(t, vrfs(vrf("red", "a"))), same); diff != "" {
		t.Fatalf("no-op revert (-want +got):\n%s", diff)
	}
}
