package bgp

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc"
)

// aftGets times Gets of single AFT entries of VRF red over conn: n Gets
// of prefixes spread over the count routes the benchmark's peer sends
// (10.0.0.0 upward, one /32 each), one at a time, PROTO encoding. Each
// answer must carry the entry asked for. It returns the median and the
// 99th percentile.
func aftGets(b *testing.B, conn *grpc.ClientConn, count, n int) (p50, p99 time.Duration) {
	b.Helper()
	c := gpb.NewGNMIClient(conn)
	first := netip.MustParseAddr("10.0.0.0").As4()
	base := uint32(first[0])<<24 | uint32(first[1])<<16 | uint32(first[2])<<8 | uint32(first[3])
	took := make([]time.Duration, 0, n)
	for i := range n {
		a := base + uint32((i*7919)%count)
		prefix := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}).String() + "/32"
		req := &gpb.GetRequest{Encoding: gpb.Encoding_PROTO, Path: []*gpb.Path{{Elem: []*gpb.PathElem{
			{Name: "network-instances"}, {Name: "network-instance", Key: map[string]string{"name": "red"}},
			{Name: "afts"}, {Name: "ipv4-unicast"}, {Name: "ipv4-entry", Key: map[string]string{"prefix": prefix}}}}}}
		start := time.Now()
		resp, err := c.Get(context.Background(), req)
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatalf("get %s: %v", prefix, err)
		}
		updates := 0
		for _, nt := range resp.GetNotification() {
			updates += len(nt.GetUpdate())
		}
		if updates == 0 {
			b.Fatalf("get %s: no entry in the answer", prefix)
		}
	}
	slices.Sort(took)
	return took[len(took)/2], took[len(took)*99/100]
}
