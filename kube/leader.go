package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// reportDebounce gathers the reports of nodes that finish together.
const reportDebounce = 30 * time.Millisecond

// Finalizer holds a deleted VirtualNetwork until no node runs its VRF.
const Finalizer = "isthmus.dev/node-config"

// leader is what runs while this replica holds the Lease: the render loop
// and the node workers. Everything ends with its context.
type leader struct {
	c   *Controller
	w   *watcher
	cfg *Config

	workers map[string]*nodeWorker // owned by run's goroutine
	rr      *reflectorSet          // route reflector workers, owned by run's goroutine
	pol     *policyDistributor     // policy workers, owned by run's goroutine
	svc     *serviceDistributor    // services workers, owned by run's goroutine
	reports chan struct{}          // buffered 1: a worker reported

	mu   sync.Mutex             // guards have, errs
	have map[string]*nodeConfig // what each node holds, nil: unknown
	errs map[string]error       // each node's last error

	cache map[types.UID]cachedVN // decoded networks by resource version
	// creating holds per-namespace networks created but not yet seen by
	// the informer, so they are not created twice.
	creating map[string]bool
	// nodeWritten is the last Node condition written per node.
	nodeWritten map[string]nodeCondition
}

type cachedVN struct {
	rv string
	vn *v1alpha1.VirtualNetwork
}

func newLeader(c *Controller, w *watcher) *leader {
	return &leader{
		c: c, w: w, cfg: &c.cfg,
		workers:     map[string]*nodeWorker{},
		reports:     make(chan struct{}, 1),
		have:        map[string]*nodeConfig{},
		errs:        map[string]error{},
		cache:       map[types.UID]cachedVN{},
		creating:    map[string]bool{},
		nodeWritten: map[string]nodeCondition{},
	}
}

// run renders and distributes on every change until ctx ends, then stops
// every node worker.
func (l *leader) run(ctx context.Context) error {
	defer func() {
		for _, wk := range l.workers {
			wk.stop()
		}
		l.stopReflectors()
		l.stopPolicy()
		l.stopServices()
	}()
	l.w.poke()
	tick := time.NewTicker(l.cfg.ResyncPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.w.changed:
		case <-l.reports:
			// Nodes finish a change at about the same time: one pass
			// (and one status write) for all of them.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(reportDebounce):
			}
			select {
			case <-l.reports:
			default:
			}
		case <-tick.C:
		}
		if err := l.reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.c.log.Warn("reconcile", "err", err)
			// Retry soon; API errors are usually conflicts.
			go func() {
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
					l.w.poke()
				}
			}()
		}
	}
}

func (l *leader) report(name string, have *nodeConfig, err error) {
	l.mu.Lock()
	l.have[name] = have
	l.errs[name] = err
	l.mu.Unlock()
	select {
	case l.reports <- struct{}{}:
	default:
	}
}

// reconcile is one pass: read the listers, keep per-namespace networks and
// finalizers in step, render, persist new blocks, hand every node its
// intent, and write status.
func (l *leader) reconcile(ctx context.Context) error {
	snap, err := l.snapshot()
	if err != nil {
		return err
	}
	if l.cfg.NamespaceIsolation {
		changed, err := l.isolate(ctx, snap)
		if err != nil || changed {
			return err // the informers bring the change back
		}
	}
	p := render(l.cfg, snap)
	intents := l.distribute(ctx, snap, p)
	return errors.Join(l.distributeReflectors(ctx, snap), l.distributePolicy(ctx, snap, p),
		l.distributeServices(ctx, snap, intents), l.writeStatus(ctx, snap, p), l.writeNodeConditions(ctx, snap, intents))
}

// snapshot reads the listers.
func (l *leader) snapshot() (snapshot, error) {
	var s snapshot
	objs, err := l.w.networks.List(labels.Everything())
	if err != nil {
		return s, fmt.Errorf("list virtual networks: %w", err)
	}
	seen := map[types.UID]bool{}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		seen[u.GetUID()] = true
		if c, ok := l.cache[u.GetUID()]; ok && c.rv == u.GetResourceVersion() {
			s.networks = append(s.networks, c.vn)
			continue
		}
		vn := &v1alpha1.VirtualNetwork{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, vn); err != nil {
			l.c.log.Warn("decode virtual network", "name", u.GetName(), "err", err)
			continue
		}
		l.cache[u.GetUID()] = cachedVN{rv: u.GetResourceVersion(), vn: vn}
		s.networks = append(s.networks, vn)
	}
	for uid := range l.cache {
		if !seen[uid] {
			delete(l.cache, uid)
		}
	}
	nss, err := l.w.namespaces.List(labels.Everything())
	if err != nil {
		return s, fmt.Errorf("list namespaces: %w", err)
	}
	s.pods = map[string]int{}
	for _, ns := range nss {
		v, labelled := ns.Labels[v1alpha1.NetworkLabel]
		s.namespaces = append(s.namespaces, namespaceInfo{
			name: ns.Name, label: v, labelled: labelled,
			terminating: ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating,
		})
		pods, err := l.w.pods.ByIndex(podsByNamespace, ns.Name)
		if err != nil {
			return s, fmt.Errorf("list pods of %s: %w", ns.Name, err)
		}
		s.pods[ns.Name] = len(pods)
	}
	nodes, err := l.w.nodes.List(labels.Everything())
	if err != nil {
		return s, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes {
		s.nodes = append(s.nodes, l.nodeInfo(n))
	}
	return s, nil
}

func (l *leader) nodeInfo(n *corev1.Node) nodeInfo {
	ni := nodeInfo{name: n.Name}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			ni.address = ip
			break
		}
	}
	if ni.address.IsValid() {
		ni.gnmi = net.JoinHostPort(ni.address.String(), strconv.Itoa(l.cfg.GNMI.Port))
	}
	if a := n.Annotations[v1alpha1.GNMIAddressAnnotation]; a != "" {
		ni.gnmi = a
	}
	return ni
}

// distribute starts a worker for every new node (or new address), stops the
// workers of nodes gone, and hands each worker its intent. A VRF whose
// block on the node is not persisted yet waits for the status write.
func (l *leader) distribute(ctx context.Context, s snapshot, p plan) map[string]nodeIntent {
	intents := make(map[string]nodeIntent, len(s.nodes))
	live := map[string]bool{}
	for _, nd := range s.nodes {
		if nd.gnmi == "" {
			continue
		}
		live[nd.name] = true
		wk := l.workers[nd.name]
		if wk != nil && wk.addr != nd.gnmi {
			wk.stop()
			wk = nil
		}
		if wk == nil {
			wk = newNodeWorker(nd.name, nd.gnmi, l.cfg, &l.c.sets, l.report)
			if err := wk.start(ctx); err != nil {
				l.c.log.Warn("start node worker", "node", nd.name, "err", err)
				continue
			}
			l.workers[nd.name] = wk
		}
		in := p.nodes[nd.name]
		for name := range in.vrfs {
			if v := p.networks[name]; v != nil && !persisted(v.vn, nd.name, v.blocks[nd.name]) {
				delete(in.vrfs, name)
			}
		}
		wk.set(in)
		intents[nd.name] = in
	}
	for name, wk := range l.workers {
		if !live[name] {
			wk.stop()
			delete(l.workers, name)
			l.mu.Lock()
			delete(l.have, name)
			delete(l.errs, name)
			l.mu.Unlock()
		}
	}
	return intents
}

func persisted(vn *v1alpha1.VirtualNetwork, node, prefix string) bool {
	for _, b := range vn.Status.Blocks {
		if b.Node == node && b.Prefix == prefix {
			return true
		}
	}
	return false
}
