package bgp

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// gobgpGoroutines returns the stacks of the goroutines running GoBGP's
// server code.
func gobgpGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "gobgp/v4/pkg/server.") {
			out = append(out, g)
		}
	}
	return out
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestStopStopsGoBGP: stopping the BGP reconciler stops all of GoBGP (its
// sessions, its BGP listener, its gRPC API and every goroutine of it), so
// a start in the same process binds the same ports again and serves.
func TestStopStopsGoBGP(t *testing.T) {
	const addr = "127.100.10.1"
	const bgpAddr, grpcAddr = addr + ":1795", addr + ":50151"
	cfg := Config{ListenPort: 1795, ListenAddresses: []string{addr}, PeerPort: 1795, GRPCAddress: grpcAddr}
	n := startNode(t, cfg)
	h := hostConf{as: 65000, routerID: "10.0.10.1", endpoint: "192.0.2.101",
		neighbors: []nbrConf{{addr: "127.100.10.2", as: 65000, local: addr}}}
	n.commit(h)
	ctx := context.Background()

	for i := range 2 {
		if !listening(bgpAddr) || !listening(grpcAddr) {
			t.Fatalf("start %d: bgp listening %t, grpc api listening %t", i+1, listening(bgpAddr), listening(grpcAddr))
		}
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		rsp, err := api.NewGoBgpServiceClient(conn).GetBgp(ctx, &api.GetBgpRequest{})
		conn.Close()
		if err != nil || rsp.GetGlobal().GetAsn() != 65000 {
			t.Fatalf("start %d: gobgp grpc api: %v, global %v", i+1, err, rsp.GetGlobal())
		}

		if err := n.bgp.Stop(ctx); err != nil {
			t.Fatalf("stop %d: %v", i+1, err)
		}
		if listening(bgpAddr) || listening(grpcAddr) {
			t.Errorf("stop %d: bgp listening %t, grpc api listening %t", i+1, listening(bgpAddr), listening(grpcAddr))
		}
		var left []string
		for range 100 {
			if left = gobgpGoroutines(); len(left) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Errorf("stop %d: %d goroutines of gobgp left, the first:\n%s", i+1, len(left), left[0])
		}

		if err := n.bgp.Start(ctx, n.core); err != nil {
			t.Fatalf("start %d: %v", i+2, err)
		}
		if err := n.bgp.Apply(ctx, nil, n.core.Config()); err != nil {
			t.Fatalf("start %d: %v", i+2, err)
		}
	}
}
