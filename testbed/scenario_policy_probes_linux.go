package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// The probes of scenario "policy" and what it reads back over gNMI: the
// denied counters of the pods' attachment points and the flows policy
// decided (network-instance/state/acl-flows).

// policyProbe is one kind of probe between two pods.
type policyProbe struct {
	// proto is "tcp", "udp" or "icmp".
	proto string
	// port is the TCP or UDP destination port; 0 for ICMP echo.
	port int
}

func (p policyProbe) String() string {
	if p.proto == "icmp" {
		return "icmp echo"
	}
	return fmt.Sprintf("%s/%d", p.proto, p.port)
}

// number is the probe's IP protocol number.
func (p policyProbe) number() int {
	switch p.proto {
	case "tcp":
		return 6
	case "udp":
		return 17
	}
	return 1
}

// policyProbes are sent between every ordered pair of pods: the allowed
// port and another one over TCP and UDP, and an ICMP echo.
var policyProbes = []policyProbe{
	{"tcp", policyPort}, {"tcp", probePort}, {"udp", policyPort}, {"udp", probePort}, {"icmp", 0},
}

// policyWant says whether a probe from src to dst is answered.
type policyWant func(src, dst *policyPod, pr policyProbe) bool

// policyRefuser is the attachment point the tier policy refuses a probe
// at: the sender's egress when the sender carries policy (web, db), else
// the receiver's ingress, after decapsulation when it came over the
// tunnel.
func policyRefuser(src, dst *policyPod) (*policyPod, string) {
	if src.app != "other" {
		return src, "egress"
	}
	return dst, "ingress"
}

// policyUDPServer answers every datagram on a port of a pod with the
// pod's identity.
type policyUDPServer struct {
	c    net.PacketConn
	done chan struct{}
}

// servePolicyUDP starts a policyUDPServer on port in pod p.
func servePolicyUDP(p *Pod, port int) (*policyUDPServer, error) {
	var c net.PacketConn
	err := ns.WithNetNSPath(filepath.Join(netnsDir, p.Netns), func(ns.NetNS) error {
		var err error
		c, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on udp/%d in %s: %w", port, ident(p), err)
	}
	s := &policyUDPServer{c: c, done: make(chan struct{})}
	id := []byte(ident(p))
	go func() {
		defer close(s.done)
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			_, _ = c.WriteTo(id, from) // a lost answer is a probe not answered
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *policyUDPServer) Close() error {
	err := s.c.Close()
	<-s.done
	return err
}

// udpAnswer sends a datagram from pod p to addr:port every 250 ms until
// one is answered or ctx's deadline (else policyProbeTimeout) passes, and
// returns the answer.
func udpAnswer(ctx context.Context, p *Pod, addr string, port int) (string, error) {
	var c net.Conn
	err := ns.WithNetNSPath(filepath.Join(netnsDir, p.Netns), func(ns.NetNS) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "udp4", net.JoinHostPort(addr, strconv.Itoa(port)))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("open udp to %s:%d from %s: %w", addr, port, ident(p), err)
	}
	defer c.Close()
	end, ok := ctx.Deadline()
	if !ok {
		end = time.Now().Add(policyProbeTimeout)
	}
	buf := make([]byte, 64)
	for {
		// The deadline is checked by the clock: ctx's timer may fire late
		// on a busy machine, and a read past the deadline returns at once,
		// so waiting for ctx.Err alone would send in a tight loop.
		if !time.Now().Before(end) {
			return "", fmt.Errorf("udp to %s:%d: no answer: %w", addr, port, context.DeadlineExceeded)
		}
		if _, err := c.Write([]byte("policy probe")); err != nil {
			return "", fmt.Errorf("send udp to %s:%d: %w", addr, port, err)
		}
		dl := time.Now().Add(250 * time.Millisecond)
		if end.Before(dl) {
			dl = end
		}
		_ = c.SetReadDeadline(dl) // a deadline error surfaces on the read
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", fmt.Errorf("read udp from %s:%d: %w", addr, port, err)
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("udp to %s:%d: %w", addr, port, ctx.Err())
		}
	}
}

// policyAnswered sends one probe from src to dst and says whether dst
// answered it, within policyProbeTimeout.
func policyAnswered(ctx context.Context, tb *Testbed, src, dst *policyPod, pr policyProbe) bool {
	addr := dst.pod.Address.String()
	pctx, cancel := context.WithTimeout(ctx, policyProbeTimeout)
	defer cancel()
	switch pr.proto {
	case "tcp":
		res, err := tb.TCPExchange(pctx, src.pod, addr, pr.port, 64)
		return err == nil && res.Identity == ident(dst.pod)
	case "udp":
		id, err := udpAnswer(pctx, src.pod, addr, pr.port)
		return err == nil && id == ident(dst.pod)
	}
	st, err := tb.PodPing(pctx, src.pod, PingOptions{To: addr, Count: 2, Interval: 300 * time.Millisecond, Timeout: 600 * time.Millisecond})
	return err == nil && st.Received > 0
}

// policyRound sends every probe between every ordered pair of pods at
// once and returns how many it sent and those whose outcome is not want.
func policyRound(ctx context.Context, tb *Testbed, pps []*policyPod, want policyWant) (int, []string) {
	var (
		mu    sync.Mutex // guards wrong
		wg    sync.WaitGroup
		wrong []string
		n     int
	)
	for _, src := range pps {
		for _, dst := range pps {
			if src == dst {
				continue
			}
			for _, pr := range policyProbes {
				n++
				wg.Add(1)
				go func() {
					defer wg.Done()
					got := policyAnswered(ctx, tb, src, dst, pr)
					if got != want(src, dst, pr) {
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("%s (%s) → %s (%s) %s: answered %v, want %v",
							ident(src.pod), src.app, ident(dst.pod), dst.app, pr, got, !got))
						mu.Unlock()
					}
				}()
			}
		}
	}
	wg.Wait()
	slices.Sort(wrong)
	return n, wrong
}

// policyMatrix sends policy rounds until the outcome is want for every
// probe, or within fails naming the probes that differ. It returns how
// many probes one round sends.
func policyMatrix(ctx context.Context, tb *Testbed, pps []*policyPod, want policyWant, within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for {
		n, wrong := policyRound(ctx, tb, pps, want)
		if len(wrong) == 0 {
			return n, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return n, fmt.Errorf("%d of %d probes differ from the policy:\n  %s", len(wrong), n, strings.Join(wrong, "\n  "))
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// aclDenied reads a pod interface's ingress- and egress-denied-packets,
// by direction, in one Get.
func (tb *Testbed) aclDenied(ctx context.Context, p *Pod) (map[string]uint64, error) {
	out, err := tb.GnmiGet(ctx, p.Host, "/interfaces/interface[name="+podIfName(p)+"]/acl/state")
	if err != nil {
		return nil, fmt.Errorf("read acl state of %s: %w", ident(p), err)
	}
	got := map[string]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		leaf := k[strings.LastIndexAny(k, "/:")+1:]
		dir, ok := strings.CutSuffix(leaf, "-denied-packets")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(v), `"`), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read %s of %s: %q: %w", leaf, ident(p), v, err)
		}
		got[dir] = n
	}
	for _, dir := range []string{"egress", "ingress"} {
		if _, ok := got[dir]; !ok {
			return nil, fmt.Errorf("read acl state of %s: no %s-denied-packets in %q", ident(p), dir, out)
		}
	}
	return got, nil
}

// aclFlow is one direction of a flow in network-instance/state/acl-flows.
type aclFlow struct {
	proto, sport, dport int
	src, dst            string
	verdict, deniedAt   string
	iface, decidedBy    string
	reply               bool
}

// aclFlowKey matches one key of a flow's path element.
var aclFlowKey = regexp.MustCompile(`\[([a-z-]+)=([^\]]*)\]`)

// aclFlows reads the flows policy decided in vrf on host, with a Get of
// its acl-flows encoded as leaves.
func (tb *Testbed) aclFlows(ctx context.Context, host, vrf string) ([]aclFlow, error) {
	gnmic, err := tb.needGnmic()
	if err != nil {
		return nil, err
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return nil, err
	}
	path := "/network-instances/network-instance[name=" + vrf + "]/state/acl-flows"
	out, err := tb.Gnmic(ctx, gnmic, host, target, "get", "--path", path, "-e", "proto", "--format", "flat")
	if err != nil {
		return nil, fmt.Errorf("read acl-flows of %s on %s: %w", vrf, host, err)
	}
	byKey := map[string]*aclFlow{}
	var keys []string
	for _, line := range strings.Split(string(out), "\n") {
		p, v, ok := strings.Cut(line, ": ")
		i, j := strings.Index(p, "/flow["), strings.LastIndex(p, "/")
		if !ok || i < 0 || j <= i {
			continue
		}
		key, leaf := p[i+1:j], p[j+1:]
		leaf = leaf[strings.LastIndex(leaf, ":")+1:]
		f := byKey[key]
		if f == nil {
			f = &aclFlow{}
			for _, m := range aclFlowKey.FindAllStringSubmatch(key, -1) {
				switch m[1] {
				case "protocol":
					f.proto, _ = strconv.Atoi(m[2]) // a bad number matches no probe
				case "source-port":
					f.sport, _ = strconv.Atoi(m[2])
				case "destination-port":
					f.dport, _ = strconv.Atoi(m[2])
				case "source-address":
					f.src = m[2]
				case "destination-address":
					f.dst = m[2]
				}
			}
			byKey[key] = f
			keys = append(keys, key)
		}
		v = strings.TrimSpace(v)
		switch leaf {
		case "verdict":
			f.verdict = v
		case "denied-at":
			f.deniedAt = v
		case "interface":
			f.iface = v
		case "decided-by":
			f.decidedBy = v
		case "reply":
			f.reply = v == "true"
		}
	}
	flows := make([]aclFlow, 0, len(keys))
	for _, k := range keys {
		flows = append(flows, *byKey[k])
	}
	return flows, nil
}

// findFlow says whether flows hold one direction from src to dst of probe
// pr (to its port, or from it when reply) for which ok holds.
func findFlow(flows []aclFlow, src, dst *Pod, pr policyProbe, reply bool, ok func(aclFlow) bool) bool {
	for _, f := range flows {
		if f.proto != pr.number() || f.src != src.Address.String() || f.dst != dst.Address.String() || f.reply != reply {
			continue
		}
		if pr.proto != "icmp" && ((!reply && f.dport != pr.port) || (reply && f.sport != pr.port)) {
			continue
		}
		if ok(f) {
			return true
		}
	}
	return false
}
