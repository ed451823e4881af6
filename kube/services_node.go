package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodeServices is one node's service intent: by VRF, the services the
// controller wants there with their JSON, and a mark of the VRFs as the
// node worker last reported them (a VRF replaced whole loses its
// services, so a change there means the node must be read again).
type nodeServices struct {
	services map[string]map[string]*svcT
	json     map[string]map[string]string
	vrfs     string
}

func newNodeServices(services map[string]map[string]*svcT, vrfs string, marshal func(*svcT) (string, error)) (*nodeServices, error) {
	ns := &nodeServices{services: services, json: map[string]map[string]string{}, vrfs: vrfs}
	for vrf, m := range services {
		ns.json[vrf] = map[string]string{}
		for name, s := range m {
			js, err := marshal(s)
			if err != nil {
				return nil, err
			}
			ns.json[vrf][name] = js
		}
	}
	return ns, nil
}

func (n *nodeServices) equal(o *nodeServices) bool {
	return n.vrfs == o.vrfs && maps.EqualFunc(n.json, o.json, maps.Equal)
}

// serviceWorker brings one node's Kubernetes services to the latest
// intent: it reads the node's VRFs, then sends ONE Set with the
// difference (replaced and deleted services). A service the node refuses
// (InvalidArgument naming it) is reported through refused and left as the
// node holds it until its translation changes; the rest go in again at
// once.
type serviceWorker struct {
	gnmiWorker
	sets    *countingSets
	refused func(service, msg string) // service: k8s/<ns>/<name>[/<port>]

	mu      sync.Mutex // guards want, pending
	want    *nodeServices
	pending bool // VRFs of the intent were not on the node yet

	// rejected holds the JSON of each service the node refused, by
	// VRF/name; owned by the loop goroutine.
	rejected map[string]string
}

// errVRFsPending says VRFs of the intent are not on the node yet (their
// node worker has not written them): the worker looks again on the next
// pass.
var errVRFsPending = errors.New("vrfs of the node's services not on the node yet")

func newServiceWorker(name, addr string, cfg *Config, sets *countingSets, refused func(service, msg string)) *serviceWorker {
	w := &serviceWorker{sets: sets, refused: refused, rejected: map[string]string{}}
	w.gnmiWorker = newGNMIWorker(name, addr, cfg, cfg.Logger.With("node", name, "gnmi", addr, "part", "services"),
		"configure node services", 10*time.Second, errVRFsPending)
	w.pass = w.configure
	return w
}

// set hands the worker a new intent; a worker waiting for VRFs looks again
// on every pass.
func (w *serviceWorker) set(want *nodeServices) {
	w.mu.Lock()
	same := w.want != nil && w.want.equal(want)
	w.want = want
	pending := w.pending
	w.mu.Unlock()
	if !same || pending {
		w.poke()
	}
}

// configure is the worker's pass: it applies the intent on every change
// and at every resync, and notes whether VRFs are still pending; failures
// retry with backoff.
func (w *serviceWorker) configure(ctx context.Context, c gpb.GNMIClient, _ bool) error {
	w.mu.Lock()
	want := w.want
	w.mu.Unlock()
	if want == nil {
		return nil
	}
	err := w.apply(ctx, c, want)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	w.mu.Lock()
	w.pending = errors.Is(err, errVRFsPending)
	w.mu.Unlock()
	return err
}

// apply reads the node and sends one Set with the difference. A service
// the node refuses is set aside and the Set tried again without it, as
// many times as there are services in it.
func (w *serviceWorker) apply(ctx context.Context, c gpb.GNMIClient, want *nodeServices) error {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.GNMI.Timeout)
	have, err := readNodeServices(rctx, c)
	cancel()
	if err != nil {
		return fmt.Errorf("read node %s services: %w", w.name, err)
	}
	for key, js := range w.rejected {
		vrf, name, _ := strings.Cut(key, "/")
		if want.json[vrf][name] != js {
			delete(w.rejected, key) // its translation changed: try it again
		}
	}
	for {
		req, pending, err := serviceSetRequest(have, want, w.rejected)
		if err != nil {
			return err
		}
		if req == nil {
			if pending > 0 {
				return fmt.Errorf("%w: %d", errVRFsPending, pending)
			}
			return nil
		}
		sctx, cancel := context.WithTimeout(ctx, w.cfg.GNMI.Timeout)
		_, err = c.Set(sctx, req)
		cancel()
		w.sets.add()
		if err == nil {
			w.log.Debug("configured node services", "deleted", len(req.Delete), "replaced", len(req.Replace))
			if pending > 0 {
				return fmt.Errorf("%w: %d", errVRFsPending, pending)
			}
			return nil
		}
		vrf, name := refusedService(err)
		if status.Code(err) != codes.InvalidArgument || name == "" || want.json[vrf][name] == "" || w.rejected[vrf+"/"+name] != "" {
			return setError(w.name, "services", err)
		}
		w.rejected[vrf+"/"+name] = want.json[vrf][name]
		w.log.Warn("node refused service", "vrf", vrf, "service", name, "err", status.Convert(err).Message())
		w.refused(name, status.Convert(err).Message())
	}
}

// refusedPath finds the VRF and service an error of the node's validation
// names in its path.
var refusedPath = regexp.MustCompile(`network-instance\[name=([^\]]+)\]/services/service\[name=(k8s/[^\]]+)\]`)

func refusedService(err error) (vrf, name string) {
	m := refusedPath.FindStringSubmatch(status.Convert(err).Message())
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}

// readNodeServices reads the controller's services on a node: by VRF the
// controller owns, its services named k8s/… (every owned VRF is listed,
// empty when it has none).
func readNodeServices(ctx context.Context, c gpb.GNMIClient) (map[string]map[string]*svcT, error) {
	var nis nisT
	if err := getConfig(ctx, c, niPath, &nis); err != nil {
		return nil, fmt.Errorf("get network instances: %w", err)
	}
	out := map[string]map[string]*svcT{}
	for name, ni := range nis.NetworkInstance {
		if !strings.HasPrefix(ni.GetConfig().GetDescription(), ownerMark) {
			continue
		}
		out[name] = map[string]*svcT{}
		if ni.Services == nil {
			continue
		}
		for sname, s := range ni.Services.Service {
			if strings.HasPrefix(sname, servicePrefix) {
				out[name][sname] = s
			}
		}
	}
	return out, nil
}

// serviceSetRequest is the one transaction from have to want (nil when
// nothing differs), and how many VRFs of want are not on the node yet.
// Services of rejected (VRF/name → the JSON refused) stay as the node
// holds them.
func serviceSetRequest(have map[string]map[string]*svcT, want *nodeServices, rejected map[string]string) (*gpb.SetRequest, int, error) {
	req := &gpb.SetRequest{}
	pending := 0
	for _, vrf := range slices.Sorted(maps.Keys(want.services)) {
		if _, on := have[vrf]; !on && len(want.services[vrf]) > 0 {
			pending++
		}
	}
	for _, vrf := range slices.Sorted(maps.Keys(have)) {
		for _, name := range slices.Sorted(maps.Keys(have[vrf])) {
			if _, ok := want.services[vrf][name]; !ok && rejected[vrf+"/"+name] == "" {
				req.Delete = append(req.Delete, servicePath(vrf, name))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(want.services[vrf])) {
			if rejected[vrf+"/"+name] != "" {
				continue
			}
			if h := have[vrf][name]; h != nil {
				if js, err := ygot.Marshal7951(h); err == nil && string(js) == want.json[vrf][name] {
					continue
				}
			}
			val, err := plainJSONVal(want.services[vrf][name])
			if err != nil {
				return nil, 0, err
			}
			req.Replace = append(req.Replace, &gpb.Update{Path: servicePath(vrf, name), Val: val})
		}
	}
	if len(req.Delete) == 0 && len(req.Replace) == 0 {
		return nil, pending, nil
	}
	return req, pending, nil
}

func servicePath(vrf, name string) *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{
		{Name: "network-instances"},
		{Name: "network-instance", Key: map[string]string{"name": vrf}},
		{Name: "services"},
		{Name: "service", Key: map[string]string{"name": name}},
	}}
}
