package testbed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// PingOptions describe an ICMP echo flow from a node.
type PingOptions struct {
	// To is the destination IPv4 address.
	To string
	// Count is the number of echo requests, at most 65536; 0 means 5.
	Count int
	// Interval separates requests; 0 means 200ms.
	Interval time.Duration
	// Timeout is how long to wait for the last reply; 0 means 2s.
	Timeout time.Duration
	// TTL of the requests; 0 keeps the kernel default.
	TTL int
}

// PingStats count an echo flow's requests and replies.
type PingStats struct {
	// Sent and Received count requests and matching replies.
	Sent, Received int
	// Lost lists the sequence numbers that got no reply.
	Lost []int
	// RTTMin, RTTAvg and RTTMax summarize the round-trip times of the
	// replies; all zero when none came back.
	RTTMin, RTTAvg, RTTMax time.Duration
}

// Loss is the share of requests without a reply, in percent.
func (s PingStats) Loss() float64 {
	if s.Sent == 0 {
		return 0
	}
	return float64(s.Sent-s.Received) * 100 / float64(s.Sent)
}

// Ping sends count echo requests from node to addr and fails when any is lost.
func (tb *Testbed) Ping(ctx context.Context, node, addr string, count int) error {
	st, err := tb.PingFlow(ctx, node, PingOptions{To: addr, Count: count})
	if err != nil {
		return err
	}
	if st.Received != st.Sent {
		return fmt.Errorf("ping %s from %s: %d of %d lost", addr, node, st.Sent-st.Received, st.Sent)
	}
	return nil
}

// PingFlow sends an echo flow from node and counts the replies. It needs no
// ping binary: the raw socket is opened inside the node's namespace and
// stays bound to it.
func (tb *Testbed) PingFlow(ctx context.Context, node string, o PingOptions) (PingStats, error) {
	if _, ok := tb.topo.Node(node); !ok {
		return PingStats{}, fmt.Errorf("ping from %q: unknown node", node)
	}
	return pingFrom(ctx, netnsDir+"/"+tb.Namespace(node), o)
}

func pingFrom(ctx context.Context, nsPath string, o PingOptions) (PingStats, error) {
	if o.Count == 0 {
		o.Count = 5
	}
	if o.Count > 1<<16 {
		return PingStats{}, fmt.Errorf("ping %s: count %d exceeds the sequence space", o.To, o.Count)
	}
	if o.Interval == 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	dst := net.ParseIP(o.To).To4()
	if dst == nil {
		return PingStats{}, fmt.Errorf("ping %q: not an IPv4 address", o.To)
	}
	var conn *icmp.PacketConn
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return PingStats{}, fmt.Errorf("open icmp socket in %s: %w", nsPath, err)
	}
	defer conn.Close()
	if o.TTL > 0 {
		if err := conn.IPv4PacketConn().SetTTL(o.TTL); err != nil {
			return PingStats{}, fmt.Errorf("set ttl: %w", err)
		}
	}
	id := rand.IntN(0xffff)
	var mu sync.Mutex // guards sent, got
	sent := make([]time.Time, o.Count)
	got := map[int]time.Duration{} // sequence number → round-trip time
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 1500)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				return // deadline or close ends the reader
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply || peer.String() != dst.String() {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq < len(sent) {
				mu.Lock()
				if !sent[e.Seq].IsZero() {
					got[e.Seq] = time.Since(sent[e.Seq])
				}
				mu.Unlock()
			}
		}
	}()
	st := PingStats{}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for seq := range o.Count {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("isthmus-testbed")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return st, fmt.Errorf("marshal echo: %w", err)
		}
		mu.Lock()
		sent[seq] = time.Now()
		mu.Unlock()
		// A send error (no route, say) shows up as a lost sequence number.
		_, _ = conn.WriteTo(b, &net.IPAddr{IP: dst})
		st.Sent++
		if seq == o.Count-1 {
			break
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("ping %s: %w", o.To, ctx.Err())
		case <-tick.C:
		}
	}
	deadline := time.Now().Add(o.Timeout)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == st.Sent {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = conn.SetReadDeadline(time.Now()) // stops the reader
	<-readDone
	var total time.Duration
	for seq := range st.Sent {
		rtt, ok := got[seq]
		if !ok {
			st.Lost = append(st.Lost, seq)
			continue
		}
		st.Received++
		total += rtt
		if st.RTTMin == 0 || rtt < st.RTTMin {
			st.RTTMin = rtt
		}
		st.RTTMax = max(st.RTTMax, rtt)
	}
	if st.Received > 0 {
		st.RTTAvg = total / time.Duration(st.Received)
	}
	return st, nil
}
