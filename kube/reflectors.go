package kube

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/isthmus-net/isthmus/gen"
)

// The route reflectors' side of the nodes' sessions: every reflector pod
// the controller discovers gets one passive route-reflector-client
// neighbor per cluster node, in the controller-owned subtree (description
// starting with ownerMark). The reflectors' other neighbors (the data
// center's gateways) come from their startup config and are never touched.

// defaultReflectorGNMIPort is the reflectors' gNMI port when none is set
// (the chart's routeReflector.gnmiPort).
const defaultReflectorGNMIPort = 9340

// reflectorSet holds one worker per discovered reflector, keyed by its gNMI
// address. It is owned by the leader's run goroutine.
type reflectorSet struct {
	workers map[string]*nodeWorker
}

// reflectorSelector parses cfg.ReflectorSelector (validated in validate).
func (c Config) reflectorSelector() (labels.Selector, error) {
	sel, err := labels.Parse(c.ReflectorSelector)
	if err != nil {
		return nil, fmt.Errorf("config: reflector selector %q: %w", c.ReflectorSelector, err)
	}
	return sel, nil
}

// reflectorTargets lists the gNMI addresses of the reflector pods: running
// pods in ReflectorNamespace matching ReflectorSelector, at their host's
// address (they run on the host network).
func (l *leader) reflectorTargets() ([]string, error) {
	if l.cfg.ReflectorSelector == "" {
		return nil, nil
	}
	sel, err := l.cfg.reflectorSelector()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range l.w.pods.List() {
		p, ok := o.(*corev1.Pod)
		if !ok || p.Namespace != l.cfg.ReflectorNamespace || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		a, err := netip.ParseAddr(p.Status.HostIP)
		if err != nil {
			continue
		}
		addr := net.JoinHostPort(a.String(), strconv.Itoa(l.cfg.ReflectorGNMIPort))
		if !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out, nil
}

// distributeReflectors starts a worker for every new reflector, stops those
// of reflectors gone, and hands each the cluster's nodes as its clients.
func (l *leader) distributeReflectors(ctx context.Context, s snapshot) error {
	if l.rr == nil {
		l.rr = &reflectorSet{workers: map[string]*nodeWorker{}}
	}
	targets, err := l.reflectorTargets()
	if err != nil {
		return err
	}
	in := nodeIntent{vrfs: map[string]vrfIntent{}, peerAS: l.cfg.BGPAS}
	for _, nd := range s.nodes {
		if nd.address.IsValid() && !slices.Contains(in.neighbors, nd.address) {
			in.neighbors = append(in.neighbors, nd.address)
		}
	}
	slices.SortFunc(in.neighbors, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, addr := range targets {
		wk := l.rr.workers[addr]
		if wk == nil {
			wk = newNodeWorker("route-reflector "+addr, addr, l.cfg, &l.c.sets, l.reflectorReport)
			wk.diff = reflectorSetRequest
			if err := wk.start(ctx); err != nil {
				l.c.log.Warn("start route reflector worker", "gnmi", addr, "err", err)
				continue
			}
			l.rr.workers[addr] = wk
		}
		wk.set(in)
	}
	for addr, wk := range l.rr.workers {
		if !slices.Contains(targets, addr) {
			wk.stop()
			delete(l.rr.workers, addr)
		}
	}
	return nil
}

// reflectorReport logs a reflector's failures; reflectors have no status
// object to write.
func (l *leader) reflectorReport(name string, _ *nodeConfig, err error) {
	if err != nil {
		l.c.log.Warn("configure route reflector", "reflector", name, "err", err)
	}
}

// stopReflectors stops every reflector worker (the leader's end).
func (l *leader) stopReflectors() {
	if l.rr == nil {
		return
	}
	for addr, wk := range l.rr.workers {
		wk.stop()
		delete(l.rr.workers, addr)
	}
}

// reflectorClientTree renders one node as a passive route-reflector client
// of a reflector: the nodes dial, the reflector listens (as the chart's
// startup clients did). The cluster id defaults to the reflector's router
// id.
func reflectorClientTree(addr netip.Addr, peerAS uint32) *neighborT {
	n := &neighborT{NeighborAddress: ygot.String(addr.String())}
	cf := n.GetOrCreateConfig()
	cf.NeighborAddress = ygot.String(addr.String())
	cf.PeerAs = ygot.Uint32(peerAS)
	cf.Description = ygot.String(ownerMark + ": route reflector client")
	n.GetOrCreateTransport().GetOrCreateConfig().PassiveMode = ygot.Bool(true)
	n.GetOrCreateRouteReflector().GetOrCreateConfig().RouteReflectorClient = ygot.Bool(true)
	af := n.GetOrCreateAfiSafis().GetOrCreateAfiSafi(gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST)
	af.GetOrCreateConfig().AfiSafiName = gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST
	af.GetOrCreateConfig().Enabled = ygot.Bool(true)
	return n
}

// reflectorSetRequest is the next transaction towards want on a reflector:
// only its client neighbors, deletes first, at most maxOpsPerSet per
// request. A reflector holds no controller VRFs.
func reflectorSetRequest(have nodeConfig, want nodeIntent) (*gpb.SetRequest, nodeConfig, error) {
	next := nodeConfig{vrfs: have.vrfs, neighbors: make(map[netip.Addr]uint32, len(have.neighbors)), bgpProtocol: have.bgpProtocol}
	for a, as := range have.neighbors {
		next.neighbors[a] = as
	}
	if have.bgpProtocol == "" {
		return nil, have, nil
	}
	req := &gpb.SetRequest{}
	full := func() bool { return len(req.Delete)+len(req.Replace) >= maxOpsPerSet }
	gone := make([]netip.Addr, 0)
	for a := range have.neighbors {
		if !slices.Contains(want.neighbors, a) {
			gone = append(gone, a)
		}
	}
	slices.SortFunc(gone, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, a := range gone {
		if full() {
			break
		}
		req.Delete = append(req.Delete, neighborPath(have.bgpProtocol, a))
		delete(next.neighbors, a)
	}
	for _, a := range want.neighbors {
		if as, ok := have.neighbors[a]; (ok && as == want.peerAS) || full() {
			continue
		}
		val, err := jsonVal(reflectorClientTree(a, want.peerAS))
		if err != nil {
			return nil, have, err
		}
		req.Replace = append(req.Replace, &gpb.Update{Path: neighborPath(have.bgpProtocol, a), Val: val})
		next.neighbors[a] = want.peerAS
	}
	if len(req.Delete) == 0 && len(req.Replace) == 0 {
		return nil, have, nil
	}
	return req, next, nil
}
