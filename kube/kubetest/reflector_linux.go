package kubetest

import (
	"fmt"
	"path/filepath"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// StartReflector starts one isthmusd in role rr (BGP only: no dataplane,
// no CNI API) in a namespace of its own, running BGP with AS as and its
// address as router id, as the chart's route reflector startup config
// does. It answers gNMI on Addr:GNMIPort like the nodes.
func StartReflector(t testing.TB, name string, as uint32) *Node {
	t.Helper()
	testenv.Privileged(t)
	nd := newNode(t, isthmusd(t), name)
	writeFile(t, nd.cfg, fmt.Sprintf(`role: rr
data-dir: %s
target: %s
log-level: warn
gnmi:
  address: %q
  users:
    - {name: %s, role: admin, password-hash: %q}
`, filepath.Join(nd.dir, "data"), name, nd.GNMI, GNMIUser, hash))
	if err := nd.start(t); err != nil {
		t.Fatal(err)
	}
	js := fmt.Sprintf(`{"name":"default","config":{"name":"default","type":"DEFAULT"},
"protocols":{"protocol":[{"identifier":"BGP","name":"bgp","config":{"identifier":"BGP","name":"bgp"},
"bgp":{"global":{"config":{"as":%d,"router-id":%q}}}}]}}`, as, nd.Addr)
	p, _ := ygot.StringToStructuredPath("/network-instances/network-instance[name=default]")
	if _, err := nd.Client().Set(nd.Context(), &gpb.SetRequest{Update: []*gpb.Update{
		{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}},
	}}); err != nil {
		t.Fatalf("start bgp on reflector %s: %v", name, err)
	}
	return nd
}
