package k8s

import (
	"encoding/json"
	"maps"
	"testing"
)

// TestCollectIsolation reads pod interfaces' ACL attachments out of a
// gnmic get of /interfaces (json_ietf, module-prefixed keys).
func TestCollectIsolation(t *testing.T) {
	out := `[{"source": "10.10.0.11:9339", "updates": [{"Path": "interfaces", "values": {"interfaces": {
	  "isthmus-interfaces:interface": [
	    {"name": "ist1", "config": {"name": "ist1", "pod": {"namespace": "x", "name": "a"}},
	     "acl": {"config": {"ingress-acl-set": ["k8s/x/a/ingress"], "ingress-default-action": "DROP"}}},
	    {"name": "ist2", "config": {"name": "ist2", "pod": {"namespace": "y", "name": "b"}}},
	    {"name": "ist3", "isthmus-interfaces:config": {"pod": {"namespace": "z", "name": "c"}},
	     "acl": {"config": {"ingress-acl-set": ["k8s/z/c/ingress"], "egress-acl-set": ["k8s/z/c/egress"]}}},
	    {"name": "eth0", "config": {"name": "eth0"}}
	  ]}}}]}]`
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]bool{}
	collectIsolation(v, got)
	want := map[string][2]bool{"x/a": {true, false}, "y/b": {false, false}, "z/c": {true, true}}
	if !maps.Equal(got, want) {
		t.Errorf("isolation %v, want %v", got, want)
	}
}
