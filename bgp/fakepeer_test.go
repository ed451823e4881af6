package bgp

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// fakePeer is a minimal BGP speaker for tests and benchmarks: it accepts
// one session, then sends pre-built UPDATEs as fast as TCP takes them. It
// packs many VPNv4 NLRIs into each UPDATE (as FRR and routers do), so that
// the receiving side, not the sender, is what a benchmark measures.
type fakePeer struct {
	t    testing.TB
	as   uint32
	id   netip.Addr
	ln   net.Listener
	conn net.Conn

	mu sync.Mutex // guards w: keepalives go between whole messages
	w  *bufio.Writer
}

// newFakePeer listens on addr:port.
func newFakePeer(t testing.TB, addr string, port int, as uint32) *fakePeer {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", addr, port))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePeer{t: t, as: as, id: netip.MustParseAddr(addr), ln: ln}
	t.Cleanup(f.close)
	return f
}

func (f *fakePeer) close() {
	f.ln.Close()
	if f.conn != nil {
		f.conn.Close()
	}
}

// accept waits for the session and completes the OPEN exchange. Messages
// received afterwards are read and dropped; keepalives are sent.
func (f *fakePeer) accept() {
	f.t.Helper()
	conn, err := f.ln.Accept()
	if err != nil {
		f.t.Fatal(err)
	}
	f.conn = conn
	f.w = bufio.NewWriterSize(conn, 1<<20)
	if _, err := readMsg(conn); err != nil { // their OPEN
		f.t.Fatal(err)
	}
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN),
		bgp.NewCapFourOctetASNumber(f.as),
	}
	open, err := bgp.NewBGPOpenMessage(bgp.AS_TRANS, 90, f.id, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.write(open)
	f.write(bgp.NewBGPKeepAliveMessage())
	f.flush()
	f.mu.Unlock()
	for {
		m, err := readMsg(conn)
		if err != nil {
			f.t.Fatal(err)
		}
		if m.Header.Type == bgp.BGP_MSG_KEEPALIVE {
			break
		}
	}
	go func() { // drain what GoBGP sends us
		for {
			if _, err := readMsg(conn); err != nil {
				return
			}
		}
	}()
	go func() {
		ka, _ := bgp.NewBGPKeepAliveMessage().Serialize()
		for {
			time.Sleep(10 * time.Second)
			f.mu.Lock()
			_, err := f.w.Write(ka)
			if err == nil {
				err = f.w.Flush()
			}
			f.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

func (f *fakePeer) write(m *bgp.BGPMessage) {
	b, err := m.Serialize()
	if err != nil {
		f.t.Fatal(err)
	}
	f.writeRaw(b)
}

func (f *fakePeer) writeRaw(b []byte) {
	if _, err := f.w.Write(b); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakePeer) flush() {
	if err := f.w.Flush(); err != nil {
		f.t.Fatal(err)
	}
}

// sendAll writes pre-serialized messages and an End-of-RIB.
func (f *fakePeer) sendAll(msgs [][]byte) {
	for len(msgs) > 0 {
		n := min(len(msgs), 256)
		f.mu.Lock()
		for _, b := range msgs[:n] {
			f.writeRaw(b)
		}
		f.mu.Unlock()
		msgs = msgs[n:]
	}
	f.mu.Lock()
	f.write(bgp.NewEndOfRib(bgp.RF_IPv4_VPN))
	f.flush()
	f.mu.Unlock()
}

func readMsg(r io.Reader) (*bgp.BGPMessage, error) {
	var hdr [bgp.BGP_HEADER_LENGTH]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	buf := make([]byte, n)
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[bgp.BGP_HEADER_LENGTH:]); err != nil {
		return nil, err
	}
	return bgp.ParseBGPMessage(buf)
}

// vpnBatch is a set of VPNv4 /32s that share attributes.
type vpnBatch struct {
	rd       string
	rts      []string
	nexthop  string
	label    uint32 // 0 is sent as is (to test rejects)
	first    netip.Addr
	count    int
	peerAS   uint32
	noTunnel bool
}

// vpnUpdates builds UPDATEs carrying b, packed up to the 4096-byte limit.
func vpnUpdates(t testing.TB, b vpnBatch) [][]byte {
	t.Helper()
	r, err := bgp.ParseRouteDistinguisher(b.rd)
	if err != nil {
		t.Fatal(err)
	}
	var ecs []bgp.ExtendedCommunityInterface
	for _, s := range b.rts {
		v, err := parseRT(s)
		if err != nil {
			t.Fatal(err)
		}
		ecs = append(ecs, v.community())
	}
	if !b.noTunnel {
		ecs = append(ecs, bgp.NewEncapExtended(bgp.TUNNEL_TYPE_MPLS_IN_UDP))
	}
	const perMsg = 240 // 16 bytes per NLRI; leaves room for the attributes
	var out [][]byte
	a := b.first
	for done := 0; done < b.count; {
		n := min(perMsg, b.count-done)
		nlris := make([]bgp.PathNLRI, 0, n)
		for i := 0; i < n; i++ {
			p, _ := bgp.NewLabeledVPNIPAddrPrefix(netip.PrefixFrom(a, 32), *bgp.NewMPLSLabelStack(b.label), r)
			nlris = append(nlris, bgp.PathNLRI{NLRI: p})
			a = a.Next()
		}
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv4_VPN, nlris, netip.MustParseAddr(b.nexthop))
		if err != nil {
			t.Fatal(err)
		}
		attrs := []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
			bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{b.peerAS})}),
			mp,
		}
		if len(ecs) > 0 {
			attrs = append(attrs, bgp.NewPathAttributeExtendedCommunities(ecs))
		}
		raw, err := bgp.NewBGPUpdateMessage(nil, attrs, nil).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
		done += n
	}
	return out
}
