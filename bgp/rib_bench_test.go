package bgp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/isthmus-net/isthmus/nos"
)

// BenchmarkRIBImport is import's own cost per path, without GoBGP: 1M
// best paths in batches of 256 (as the watch hands them over), flushed
// every 16 batches.
func BenchmarkRIBImport(b *testing.B) {
	const n = 1_000_000
	rd, _ := bgp.ParseRouteDistinguisher("65099:1")
	red, err := parseRT("65000:1")
	if err != nil {
		b.Fatal(err)
	}
	ecs := bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{red.community()})
	paths := make([]*apiutil.Path, n)
	for i := range paths {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 10<<24+uint32(i))
		nlri, _ := bgp.NewLabeledVPNIPAddrPrefix(netip.PrefixFrom(netip.AddrFrom4(a), 32), *bgp.NewMPLSLabelStack(1000), rd)
		mp, _ := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv4_VPN, []bgp.PathNLRI{{NLRI: nlri}}, netip.MustParseAddr("192.0.2.99"))
		paths[i] = &apiutil.Path{Family: bgp.RF_IPv4_VPN, Nlri: nlri, Attrs: []bgp.PathAttributeInterface{mp, ecs},
			PeerAddress: netip.MustParseAddr("10.0.0.2")}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r := newRIB()
		r.setEndpoint(netip.MustParseAddr("192.0.2.1"))
		r.setVRFs(map[string]vrfSpec{"red": {name: "red", importRTs: []rt{red}, encap: nos.EncapMPLSoUDP}})
		installed := 0
		for i := 0; i < n; i += 256 {
			r.update(paths[i:min(i+256, n)])
			if i/256%16 == 15 || i+256 >= n {
				installed += len(r.flush())
			}
		}
		if installed != n {
			b.Fatalf("%d of %d routes flushed", installed, n)
		}
	}
}
