package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// serviceDistributor is the leader's services half: it translates every
// Service on each pass and hands each node's serviceWorker the services
// of the VRFs the node holds. Owned by the leader's run goroutine.
type serviceDistributor struct {
	workers map[string]*serviceWorker
	// translator keeps translations from pass to pass.
	translator *serviceTranslator
	// reported is the last set of translation errors logged.
	reported string
}

// distributeServices translates the cluster's Services and gives every
// node with a gNMI address the services of the namespaces its intent maps
// to a VRF.
func (l *leader) distributeServices(ctx context.Context, s snapshot, intents map[string]nodeIntent) error {
	if l.svc == nil {
		l.svc = &serviceDistributor{workers: map[string]*serviceWorker{}, translator: newServiceTranslator(nil)}
	}
	svcs, err := l.w.services.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	all, err := l.w.slices.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list endpoint slices: %w", err)
	}
	for _, es := range all {
		if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
			bySvc[es.Namespace+"/"+name] = append(bySvc[es.Namespace+"/"+name], es)
		}
	}
	for _, l := range bySvc {
		slices.SortFunc(l, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	}
	st := l.svc.translator
	st.pass(func(ns, name string) []*discoveryv1.EndpointSlice { return bySvc[ns+"/"+name] })
	defer st.forget()
	live := map[string]bool{}
	var errs serviceErrors
	for _, nd := range s.nodes {
		if nd.gnmi == "" {
			continue
		}
		live[nd.name] = true
		wk := l.svc.workers[nd.name]
		if wk != nil && wk.addr != nd.gnmi {
			wk.stop()
			wk = nil
		}
		if wk == nil {
			wk = newServiceWorker(nd.name, nd.gnmi, l.cfg, &l.c.sets, l.serviceRefused)
			if err := wk.start(ctx); err != nil {
				l.c.log.Warn("start node services worker", "node", nd.name, "err", err)
				continue
			}
			l.svc.workers[nd.name] = wk
		}
		in := intents[nd.name]
		vrfOf := func(ns string) string {
			if vrf := in.namespaces[ns]; vrf != "" {
				if _, on := in.vrfs[vrf]; on {
					return vrf
				}
			}
			return ""
		}
		var trees map[string]map[string]*svcT
		trees, errs = renderNodeServices(svcs, st, vrfOf, nd.name)
		want, err := newNodeServices(trees, l.reportedVRFs(nd.name), st.marshal)
		if err != nil {
			return err
		}
		wk.set(want)
	}
	for name, wk := range l.svc.workers {
		if !live[name] {
			wk.stop()
			delete(l.svc.workers, name)
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, k+": "+errs[k].Error())
	}
	if msg := strings.Join(parts, "; "); msg != l.svc.reported {
		l.svc.reported = msg
		if msg != "" {
			l.c.log.Warn("services not translated", "errors", msg)
		}
	}
	return nil
}

// reportedVRFs marks what a node's worker last reported: it reports a new
// nodeConfig whenever it has read the node (after a restart, a lost
// connection, a resync) or written it, which may have replaced a VRF and
// its services with it; a new mark makes the services worker read the
// node again.
func (l *leader) reportedVRFs(node string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if have := l.have[node]; have != nil {
		return fmt.Sprintf("%p", have)
	}
	return ""
}

// stopServices stops every services worker.
func (l *leader) stopServices() {
	if l.svc == nil {
		return
	}
	for _, wk := range l.svc.workers {
		wk.stop()
	}
}

// serviceRefused records a Warning Event on the Kubernetes Service whose
// Isthmus service (k8s/<ns>/<name>[/<port>]) a node refused. Called from
// the services workers.
func (l *leader) serviceRefused(service, msg string) {
	parts := strings.SplitN(strings.TrimPrefix(service, servicePrefix), "/", 3)
	if len(parts) < 2 {
		return
	}
	ns, name := parts[0], parts[1]
	ref := corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ns, Name: name}
	if svc, err := l.w.services.Services(ns).Get(name); err == nil {
		ref.UID, ref.ResourceVersion = svc.UID, svc.ResourceVersion
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: name + ".", Namespace: ns},
		InvolvedObject: ref,
		Reason:         ReasonServiceRefused,
		Message:        msg,
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "isthmus-controller"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.GNMI.Timeout)
	defer cancel()
	if _, err := l.c.kc.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		l.c.log.Warn("record service event", "service", ns+"/"+name, "err", err)
	}
}

// ReasonServiceRefused is the reason of the Warning Event a Service gets
// when a node refuses its translation (the message is the node's).
const ReasonServiceRefused = "IsthmusServiceRefused"
