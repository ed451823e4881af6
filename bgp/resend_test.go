package bgp

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// TestRoutesArrivingAsSessionComesUp: a reflector takes in a stream of
// routes from one peer while the sessions to its clients come up; every
// client gets every one of them. GoBGP sends a new session the table as
// it is, then marks the peer established: a route that arrived in between
// went nowhere, and the client never learnt it (resend.go). Eight clients
// come up at eight points of the stream, each a chance to catch that.
func TestRoutesArrivingAsSessionComesUp(t *testing.T) {
	const rr, source, port, routes = "127.100.13.1", "127.100.13.2", 1792, 2000
	var clients []string
	for i := range 8 {
		clients = append(clients, fmt.Sprintf("127.100.13.%d", 3+i))
	}
	fp := newFakePeer(t, source, port, 65099)
	r := startNode(t, Config{ListenPort: port, ListenAddresses: []string{rr}, PeerPort: port})
	h := hostConf{as: 65000, routerID: "10.0.13.1", endpoint: "192.0.2.131", neighbors: []nbrConf{{addr: source, as: 65099, local: rr}}}
	for _, c := range clients {
		h.neighbors = append(h.neighbors, nbrConf{addr: c, as: 65000, local: rr, rrClient: true, passive: true})
	}
	r.commit(h)
	fp.accept()
	var fcs []*fakeClient
	for _, c := range clients {
		fcs = append(fcs, dialFakeClient(t, c, rr, port, 65000))
	}

	// One UPDATE per route, all written at once; client i's session comes
	// up once the reflector has taken in (i+1)/10 of them, while it goes on
	// taking in the rest one after another.
	var msgs [][]byte
	a := netip.MustParseAddr("10.128.0.0")
	for range routes {
		msgs = append(msgs, vpnUpdates(t, vpnBatch{rd: "65099:1", rts: []string{"65000:1"}, nexthop: "192.0.2.99",
			label: 100, first: a, count: 1, peerAS: 65099})...)
		a = a.Next()
	}
	fp.sendAll(msgs)
	src := netip.MustParseAddr(source)
	received := func() int64 { return r.bgp.rib.counters().received[src] }
	for i, fc := range fcs {
		eventually(t, 30*time.Second, "routes at the reflector", func() bool { return received() >= int64(routes*(i+1)/10) })
		fc.establish()
	}
	deadline := time.Now().Add(30 * time.Second)
	for got := received(); got != routes; got = received() {
		if time.Now().After(deadline) {
			t.Fatalf("the reflector has %d of the %d routes sent", got, routes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline = time.Now().Add(15 * time.Second)
	for i, fc := range fcs {
		for got := fc.count(); got != routes; got = fc.count() {
			if time.Now().After(deadline) {
				t.Fatalf("client %s got %d of the %d routes the reflector has", clients[i], got, routes)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// fakeClient is the client side of a BGP session: it dials, exchanges
// OPENs, and completes the session when told to, then records the VPNv4
// routes it is sent.
type fakeClient struct {
	conn      net.Conn
	keepalive time.Duration
	done      chan struct{} // closed at cleanup: ends the keepalives

	wmu sync.Mutex // guards writes to conn

	mu     sync.Mutex // guards routes
	routes map[string]bool
}

// dialFakeClient connects from local to remote:port and exchanges OPENs,
// retrying while the remote's session is not ready for the connection.
func dialFakeClient(t *testing.T, local, remote string, port int, as uint32) *fakeClient {
	t.Helper()
	const hold = 90
	caps := []bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN), bgp.NewCapFourOctetASNumber(as)}
	open, err := bgp.NewBGPOpenMessage(uint16(as), hold, netip.MustParseAddr(local),
		[]bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := open.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := d.Dial("tcp", net.JoinHostPort(remote, strconv.Itoa(port)))
		var theirs *bgp.BGPMessage
		if err == nil {
			_, err = conn.Write(raw)
		}
		if err == nil {
			theirs, err = readMsg(conn)
		}
		if err == nil && theirs.Header.Type == bgp.BGP_MSG_OPEN {
			c := &fakeClient{conn: conn, keepalive: keepaliveInterval(theirs, hold), done: make(chan struct{}), routes: map[string]bool{}}
			t.Cleanup(func() { close(c.done); conn.Close() })
			return c
		}
		if conn != nil {
			conn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("open a session from %s to %s: %v", local, remote, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// establish sends the KEEPALIVE that completes the session, then keeps
// it up and records what the remote announces and withdraws.
func (c *fakeClient) establish() {
	ka, _ := bgp.NewBGPKeepAliveMessage().Serialize()
	send := func() error {
		c.wmu.Lock()
		defer c.wmu.Unlock()
		_, err := c.conn.Write(ka)
		return err
	}
	if send() != nil {
		return // the checks find no routes
	}
	go func() {
		tick := time.NewTicker(c.keepalive)
		defer tick.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-tick.C:
				if send() != nil {
					return
				}
			}
		}
	}()
	go func() {
		for {
			m, err := readMsg(c.conn)
			if err != nil {
				return
			}
			u, ok := m.Body.(*bgp.BGPUpdate)
			if !ok {
				continue
			}
			c.mu.Lock()
			for _, a := range u.PathAttributes {
				switch a := a.(type) {
				case *bgp.PathAttributeMpReachNLRI:
					for _, n := range a.Value {
						c.routes[n.NLRI.String()] = true
					}
				case *bgp.PathAttributeMpUnreachNLRI:
					for _, n := range a.Value {
						delete(c.routes, n.NLRI.String())
					}
				}
			}
			c.mu.Unlock()
		}
	}()
}

// count is how many routes the remote announces now.
func (c *fakeClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.routes)
}
