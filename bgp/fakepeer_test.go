package bgp

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
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
	theirs, err := readMsg(conn)
	if err != nil {
		f.t.Fatal(err)
	}
	keepalive := keepaliveInterval(theirs, fakePeerHoldTime)
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN),
		bgp.NewCapFourOctetASNumber(f.as),
	}
	open, err := bgp.NewBGPOpenMessage(bgp.AS_TRANS, fakePeerHoldTime, f.id, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
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
			time.Sleep(keepalive)
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

// fakePeerHoldTime is the hold time the fake peer offers, in seconds.
const fakePeerHoldTime = 90

// keepaliveInterval is how often to send keepalives on a session opened
// with their OPEN when we offered ours seconds: a third of the negotiated
// hold time (the smaller of the two, RFC 4271 4.2), so that the peer's
// hold timer never expires however long the session stays otherwise
// silent.
func keepaliveInterval(their *bgp.BGPMessage, ours uint16) time.Duration {
	hold := ours
	if o, ok := their.Body.(*bgp.BGPOpen); ok && o.HoldTime != 0 && o.HoldTime < hold {
		hold = o.HoldTime
	}
	return max(time.Duration(hold)*time.Second/3, 100*time.Millisecond)
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

// TestFakePeerKeepsSessionUp: the fake peer keeps a session up while it
// sends nothing else, however short the hold time the other side asks
// for. It used to send keepalives every 10 s whatever was negotiated, so
// a session configured with a shorter hold time (the tests' 9 s) expired
// once the routes were sent and every route was withdrawn: in
// BenchmarkAFT at 1M routes that happened while the AFT subscriber was
// still catching up, which then saw the entries it had not read yet go
// and never reached the full table.
func TestFakePeerKeepsSessionUp(t *testing.T) {
	const us, peer, port, hold = "127.100.12.1", "127.100.12.2", 1793, 3
	fp := newFakePeer(t, peer, port, 65099)
	srv := server.NewBgpServer(server.LoggerOption(gobgpLogger(testLogger(t), nil), nil))
	go srv.Serve()
	defer srv.Stop()
	ctx := context.Background()
	g := globalSpec{as: 65000, routerID: netip.MustParseAddr("10.0.12.1"), listenPort: -1}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: globalToAPI(g)}); err != nil {
		t.Fatal(err)
	}
	down := make(chan string, 1)
	var established atomic.Bool
	// The watch ends with its context, not with srv.Stop: a watcher left
	// running would count as GoBGP's for the next test that checks none is.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
		if ev.Type != apiutil.PEER_EVENT_STATE {
			return
		}
		if ev.Peer.State.SessionState == bgp.BGP_FSM_ESTABLISHED {
			established.Store(true)
			return
		}
		if established.Load() {
			select {
			case down <- ev.Peer.State.DisconnectMessage:
			default:
			}
		}
	}}, server.WatchPeer())
	if err != nil {
		t.Fatal(err)
	}
	n := neighborSpec{address: netip.MustParseAddr(peer), peerAS: 65099, enabled: true, localAddress: netip.MustParseAddr(us),
		remotePort: port, timers: timerSpec{connectRetry: 1, holdTime: hold, keepalive: 1}, families: familyVPNv4}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: neighborToAPI(n, false)}); err != nil {
		t.Fatal(err)
	}
	fp.accept()
	fp.sendAll(vpnUpdates(t, vpnBatch{rd: "65099:1", rts: []string{"65000:1"}, nexthop: "192.0.2.99", label: 100,
		first: netip.MustParseAddr("10.12.0.0"), count: 10, peerAS: 65099}))
	// Two hold times with nothing but keepalives from the peer.
	select {
	case reason := <-down:
		t.Fatalf("session went down (%q): the peer's keepalives did not keep it up", reason)
	case <-time.After(2 * hold * time.Second):
	}
}
