package bgp

import (
	"context"
	"testing"
	"time"

	"github.com/openconfig/gnmi/ctree"
	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/gen"
)

// stateStamp returns the telemetry timestamp of vrf's exported and
// imported route counts: it moves whenever they are written.
func (n *node) stateStamp(vrf string) (stamp int64) {
	for _, leaf := range []string{"exported", "imported"} {
		q := []string{"network-instances", "network-instance", vrf, "state", leaf, "routes"}
		n.core.Cache().Query(n.core.Target(), q, func(_ []string, l *ctree.Leaf, _ any) error {
			if nf, ok := l.Value().(*gpb.Notification); ok {
				stamp += nf.GetTimestamp()
			}
			return nil
		})
	}
	return stamp
}

// vrfStateObjects returns the state objects of a VRF's exported and
// imported subtrees as they are in the state tree.
func (n *node) vrfStateObjects(vrf string) (exported *niExportedT, imported *niImportedT) {
	n.core.Read(func(_, st *gen.Device) error {
		s := st.GetNetworkInstances().GetNetworkInstance(vrf).GetState()
		exported, imported = s.GetExported(), s.GetImported()
		return nil
	})
	return exported, imported
}

// TestStateWritesOnlyWhatChanged: a publication writes the state of the
// VRFs whose state changed and leaves the others alone (with ten
// thousand VRFs, rewriting all of them after every commit held up the
// next commit for a quarter of a second), and a VRF deleted and
// configured again gets its state back.
func TestStateWritesOnlyWhatChanged(t *testing.T) {
	n := startNode(t, Config{ListenPort: -1, PeerPort: 1798})
	red := vrfConf{name: "red", rd: "10.0.8.1:1", imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: "10.8.0.0/24", pods: []string{"10.8.0.1"}}
	blue := vrfConf{name: "blue", rd: "10.0.8.1:2", imp: []string{"65000:2"}, exp: []string{"65000:2"}, pool: "10.8.1.0/24", pods: []string{"10.8.1.1"}}
	h := hostConf{as: 65000, routerID: "10.0.8.1", endpoint: "192.0.2.81", vrfs: []vrfConf{red, blue}}
	n.commit(h)
	eventually(t, 10*time.Second, "red and blue in state", func() bool {
		re, _ := n.vrfStateObjects("red")
		be, _ := n.vrfStateObjects("blue")
		return re.GetRoutes() == 1 && be.GetRoutes() == 1
	})
	ctx := context.Background()
	if err := n.bgp.publishState(ctx); err != nil {
		t.Fatal(err)
	}

	// Red exports a second pod: its state changes, blue's does not.
	blueStamp, redStamp := n.stateStamp("blue"), n.stateStamp("red")
	if blueStamp == 0 {
		t.Fatal("blue's state is not in telemetry")
	}
	h.vrfs[0].pods = append(h.vrfs[0].pods, "10.8.0.2")
	n.commit(h)
	if err := n.bgp.publishState(ctx); err != nil {
		t.Fatal(err)
	}
	if re, _ := n.vrfStateObjects("red"); re.GetRoutes() != 2 || n.stateStamp("red") == redStamp {
		t.Fatalf("red exports %d routes in state, want 2 (written again)", re.GetRoutes())
	}
	if n.stateStamp("blue") != blueStamp {
		t.Error("the publication wrote blue's unchanged state again")
	}

	// Blue goes and comes back: its state is written again.
	h.vrfs = h.vrfs[:1]
	n.commit(h)
	h.vrfs = append(h.vrfs, blue)
	n.commit(h)
	if err := n.bgp.publishState(ctx); err != nil {
		t.Fatal(err)
	}
	if e, i := n.vrfStateObjects("blue"); e.GetRoutes() != 1 || i == nil {
		t.Errorf("blue configured again: state exported %v imported %v", e, i)
	}
}
