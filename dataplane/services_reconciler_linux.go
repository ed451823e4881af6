package dataplane

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// flowsPerService caps the flows published as state per service port
// every state interval; flowsPerRequest caps those a Get reads on request.
const (
	flowsPerService = 256
	flowsPerRequest = 65536
)

// serviceName locates a service port's config and state: VRF, service
// and port name ("" for the service's unnamed port).
type serviceName struct{ VRF, Name, Port string }

// serviceID locates a service's config and state.
type serviceID struct{ VRF, Name string }

// applyServices programs the services of intended: new and changed ones
// are set, removed ones deleted with their flows. r.mu must be held.
func (r *Reconciler) applyServices(intended *gen.Device, pods map[string]podIntent) error {
	want, err := servicesOf(intended, pods)
	if err != nil {
		return err
	}
	wantKeys := map[ServiceKey]bool{}
	for _, s := range want {
		wantKeys[s.ServiceKey] = true
	}
	var del []ServiceKey
	if r.services == nil {
		// The first Apply of this process: services an earlier process
		// pinned and the configuration no longer has go too.
		pinned, err := r.dp.ServiceKeys()
		if err != nil {
			return err
		}
		for _, k := range pinned {
			if !wantKeys[k] {
				del = append(del, k)
			}
		}
		r.services = map[serviceName]namedService{}
	}
	var set []Service
	for _, s := range want {
		if old, ok := r.services[serviceName{s.VRF, s.Name, s.Port}]; ok && reflect.DeepEqual(old.Service, s.Service) {
			continue
		}
		set = append(set, s.Service)
	}
	for _, s := range r.services {
		if !wantKeys[s.ServiceKey] {
			del = append(del, s.ServiceKey)
		}
	}
	// A service that moved to another key is deleted before its new key
	// is set, so two services never claim one key at once.
	if err := r.dp.DeleteServices(del); err != nil {
		return err
	}
	if err := r.dp.SetServices(set); err != nil {
		return err
	}
	clear(r.services)
	for _, s := range want {
		r.services[serviceName{s.VRF, s.Name, s.Port}] = s
	}
	return nil
}

// programmedServices returns the programmed services' ports grouped by
// service, each group sorted by port name ("" first), for the services
// that match (nil matches every one).
func (r *Reconciler) programmedServices(match func(serviceID) bool) (map[serviceID][]namedService, *Dataplane, *nos.Core) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[serviceID][]namedService{}
	for n, s := range r.services {
		id := serviceID{n.VRF, n.Name}
		if match == nil || match(id) {
			out[id] = append(out[id], s)
		}
	}
	for _, ports := range out {
		slices.SortFunc(ports, func(a, b namedService) int { return strings.Compare(a.Port, b.Port) })
	}
	return out, r.dp, r.core
}

// collectAndPublish runs the flow collector once and writes the state of
// every service, its ports, backends and flows, and the flow table's
// counters. Writes the core refuses because the service is no longer
// configured are skipped.
func (r *Reconciler) collectAndPublish() error {
	svcs, dp, core := r.programmedServices(nil)
	if dp == nil || core == nil {
		return nil
	}
	gc, err := dp.CollectFlows(FlowTimeouts{})
	if err != nil {
		return err
	}
	var errs []error
	update := func(path string, st ygot.GoStruct) {
		if err := core.UpdateState(path, st); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	fc, err := dp.FlowCounters()
	if err != nil {
		return err
	}
	update("/system/flow-table/state", &gen.IsthmusSystem_System_FlowTable_State{
		Capacity: ygot.Uint32(uint32(fc.Capacity)), Entries: ygot.Uint32(uint32(gc.Entries - 2*gc.Expired - gc.Evicted)),
		Created: ygot.Uint64(fc.Created), Expired: ygot.Uint64(fc.Expired),
		Evicted: ygot.Uint64(fc.Evicted), TableFull: ygot.Uint64(fc.TableFull),
	})
	flows, err := dp.AllServiceFlows(flowsPerService)
	if err != nil {
		return err
	}
	r.flowsMu.Lock()
	defer r.flowsMu.Unlock()
	for id, ports := range svcs {
		if err := r.publishService(dp, core, id, ports, flows, update); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func servicePath(id serviceID) string {
	return fmt.Sprintf("/network-instances/network-instance[name=%s]/services/service[name=%s]", id.VRF, id.Name)
}

// publishService writes the state of one service from its ports: the
// service's counters and flows summed over its ports, each named port's
// counters, and each configured backend's counters summed over the ports.
// r.flowsMu must be held.
func (r *Reconciler) publishService(dp *Dataplane, core *nos.Core, id serviceID, ports []namedService, flows map[ServiceKey][]ServiceFlow, update func(string, ygot.GoStruct)) error {
	base := servicePath(id)
	first := ports[0]
	el := eligible(first.Backends)
	local := 0
	for _, b := range el {
		if b.Local {
			local++
		}
	}
	st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State{
		Name:                 ygot.String(id.Name),
		Address:              ygot.String(first.Addr.String()),
		SessionAffinity:      gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_NONE,
		ExternalTrafficScope: gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_LOCAL,
		Backends:             ygot.Uint32(uint32(len(el))),
		LocalBackends:        ygot.Uint32(uint32(local)),
	}
	if first.ExternalAll {
		st.ExternalTrafficScope = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_ALL
	}
	if first.Affinity {
		st.SessionAffinity = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_CLIENT_IP
	}
	var total ServiceCounters
	perBackend := map[BackendKey]ServiceCounters{}
	for _, p := range ports {
		t, per, err := dp.ServiceStats(p.ServiceKey)
		if err != nil {
			return err
		}
		total.add(t)
		for i, b := range p.Backends {
			c := perBackend[p.Configured[i]]
			c.add(per[b.BackendKey])
			perBackend[p.Configured[i]] = c
		}
		if p.Port == "" {
			st.Port, st.Protocol = ygot.Uint16(p.Port16()), protocolEnum(p.Proto)
			continue
		}
		ps := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Ports_Port_State{
			Name: ygot.String(p.Port), Port: ygot.Uint16(p.Port16()), Protocol: protocolEnum(p.Proto),
			Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Ports_Port_State_Counters{
				Packets: ygot.Uint64(t.Packets), Bytes: ygot.Uint64(t.Bytes), Flows: ygot.Uint64(t.Flows),
			},
		}
		if p.TargetPort != 0 {
			ps.TargetPort = ygot.Uint16(p.TargetPort)
		}
		update(fmt.Sprintf("%s/ports/port[name=%s]/state", base, p.Port), ps)
	}
	st.Counters = &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Counters{
		Packets: ygot.Uint64(total.Packets), Bytes: ygot.Uint64(total.Bytes), Flows: ygot.Uint64(total.Flows),
	}
	// The flow list is replaced whole: flows that ended must not linger.
	if err := core.DeleteState(base + "/state/flows"); err != nil && !errors.Is(err, nos.ErrNoConfig) {
		return err
	}
	if err := fillFlows(st.GetOrCreateFlows(), ports, flows); err != nil {
		return fmt.Errorf("list flows of %s: %w", base, err)
	}
	update(base+"/state", st)
	for i, b := range first.Backends {
		k := first.Configured[i]
		c := perBackend[k]
		update(fmt.Sprintf("%s/backends/backend[address=%s][port=%d]/state", base, k.Addr, k.Port),
			&gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_State{
				Address: ygot.String(k.Addr.String()), Port: ygot.Uint16(k.Port),
				Weight: ygot.Uint8(max(b.Weight, 1)), Ready: ygot.Bool(b.Ready), Serving: ygot.Bool(b.Serving),
				Terminating: ygot.Bool(b.Terminating), Local: ygot.Bool(b.Local),
				Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_State_Counters{
					Packets: ygot.Uint64(c.Packets), Bytes: ygot.Uint64(c.Bytes), Flows: ygot.Uint64(c.Flows),
				},
			})
	}
	return nil
}

// fillFlows lists the flows of every port of a service in fl.
func fillFlows(fl *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Flows, ports []namedService, flows map[ServiceKey][]ServiceFlow) error {
	for _, p := range ports {
		for _, f := range flows[p.ServiceKey] {
			e, err := fl.NewFlow(protocolEnum(p.Proto), f.Client.Addr().String(), f.Client.Port(), p.Port16())
			if err != nil {
				return fmt.Errorf("list flow %v to port %d: %w", f.Client, p.Port16(), err)
			}
			e.BackendAddress = ygot.String(f.Backend.Addr().String())
			e.BackendPort = ygot.Uint16(f.Backend.Port())
			e.Idle = ygot.Uint32(uint32(f.Idle / time.Second))
			e.State = flowStateEnum(f.State)
		}
	}
	return nil
}

// refreshFlows is the on-request reader of services' flows (registered
// with nos.Core.RefreshOnRequest): for a Get that names a service (or
// every service, with a wildcard) down to its flows, it reads the pinned
// flow table and replaces state/flows of the services asked for. A Get
// that stops above the service list (a whole VRF, the whole tree) gets
// the flows of the last periodic publication.
func (r *Reconciler) refreshFlows(ctx context.Context, path *gpb.Path) error {
	elems := path.GetElem()
	if len(elems) < 4 {
		return nil
	}
	keyMatch := func(e *gpb.PathElem, v string) bool {
		k, ok := e.GetKey()["name"]
		return !ok || k == "*" || k == v
	}
	svcs, dp, core := r.programmedServices(func(id serviceID) bool {
		return keyMatch(elems[1], id.VRF) && keyMatch(elems[3], id.Name)
	})
	if dp == nil || core == nil || len(svcs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	flows, err := dp.AllServiceFlows(flowsPerRequest)
	if err != nil {
		return err
	}
	r.flowsMu.Lock()
	defer r.flowsMu.Unlock()
	var errs []error
	for id, ports := range svcs {
		base := servicePath(id)
		if err := core.DeleteState(base + "/state/flows"); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
			continue
		}
		fl := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Flows{}
		if err := fillFlows(fl, ports, flows); err != nil {
			errs = append(errs, fmt.Errorf("list flows of %s: %w", base, err))
			continue
		}
		if len(fl.Flow) == 0 {
			continue
		}
		if err := core.UpdateState(base+"/state/flows", fl); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Port16 is the service port of a named service (its ServiceKey's port).
func (s namedService) Port16() uint16 { return s.ServiceKey.Port }

func (c *ServiceCounters) add(o ServiceCounters) {
	c.Packets += o.Packets
	c.Bytes += o.Bytes
	c.Flows += o.Flows
}

func protocolEnum(p Protocol) gen.E_IsthmusNetworkInstance_ServiceProtocol {
	if p == UDP {
		return gen.IsthmusNetworkInstance_ServiceProtocol_UDP
	}
	return gen.IsthmusNetworkInstance_ServiceProtocol_TCP
}

func flowStateEnum(s FlowState) gen.E_IsthmusNetworkInstance_FlowState {
	switch s {
	case FlowSyn:
		return gen.IsthmusNetworkInstance_FlowState_SYN
	case FlowEstablished:
		return gen.IsthmusNetworkInstance_FlowState_ESTABLISHED
	case FlowClosing:
		return gen.IsthmusNetworkInstance_FlowState_CLOSING
	case FlowReset:
		return gen.IsthmusNetworkInstance_FlowState_RESET
	}
	return gen.IsthmusNetworkInstance_FlowState_ACTIVE
}
