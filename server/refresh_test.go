package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/gen"
)

// TestGetRefreshesStateOnRequest: a Get of state at, inside or above a
// path a reconciler registered with RefreshOnRequest calls the refresher
// with the requested path (keys included) before reading, so the answer
// holds what the refresher wrote at request time; a Get of configuration,
// a Get elsewhere and a Get after the registration ended do not call it;
// a refresher's error is Internal and names the path.
func TestGetRefreshesStateOnRequest(t *testing.T) {
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	red := vrfPath("red")
	if err := e.core.UpdateState(red+"/state/forwarding", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Forwarding{Labels: []uint32{100}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	var fail error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.core.RefreshOnRequest(ctx, "/network-instances/network-instance/state/counters", func(_ context.Context, p *gpb.Path) error {
		mu.Lock()
		defer mu.Unlock()
		if fail != nil {
			return fail
		}
		asked = append(asked, pathString(p))
		// What the source says now: the number of reads so far.
		return e.core.UpdateState(red+"/state/counters", &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{
			NoRoute: ygot.Uint64(uint64(len(asked))),
		})
	})
	calls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), asked...)
	}
	leaf := red + "/state/counters/no-route"
	for i := uint64(1); i <= 2; i++ {
		got := leafMap(t, getOne(t, e, gpb.GetRequest_STATE, gpb.Encoding_PROTO, leaf))
		if got[leaf] != i {
			t.Fatalf("get %d: %v, want the value the refresher wrote at the request (%d)", i, got, i)
		}
	}
	if c := calls(); len(c) != 2 || c[0] != leaf {
		t.Errorf("refresher saw %q, want the requested path twice", c)
	}
	// Above the registered path: the whole VRF.
	if got := leafMap(t, getOne(t, e, gpb.GetRequest_ALL, gpb.Encoding_PROTO, red)); got[leaf] != uint64(3) {
		t.Errorf("get of the VRF: %v, want the refreshed counter 3", got[leaf])
	}
	n := len(calls())
	getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, red)
	getOne(t, e, gpb.GetRequest_STATE, gpb.Encoding_PROTO, red+"/state/forwarding")
	if c := calls(); len(c) != n {
		t.Errorf("a CONFIG Get or a Get of other state called the refresher: %q", c[n:])
	}

	mu.Lock()
	fail = errors.New("read the source: gone")
	mu.Unlock()
	_, err := e.cli.Get(viewer(), &gpb.GetRequest{Type: gpb.GetRequest_STATE, Path: []*gpb.Path{mustPath(t, leaf)}})
	if status.Code(err) != codes.Internal || !strings.Contains(status.Convert(err).Message(), leaf) || !strings.Contains(err.Error(), "gone") {
		t.Errorf("failing refresher: %v, want Internal naming the path and the cause", err)
	}

	cancel()
	mu.Lock()
	fail = nil
	mu.Unlock()
	n = len(calls())
	getOne(t, e, gpb.GetRequest_STATE, gpb.Encoding_PROTO, leaf)
	if c := calls(); len(c) != n {
		t.Errorf("the refresher was called after its registration ended")
	}
}
