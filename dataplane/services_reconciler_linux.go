package dataplane

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// flowsPerService caps the flows published as state per service.
const flowsPerService = 256

// serviceName locates a service's config and state.
type serviceName struct{ VRF, Name string }

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
		r.services = map[serviceName]Service{}
	}
	var set []Service
	for _, s := range want {
		if old, ok := r.services[serviceName{s.VRF, s.Name}]; ok && reflect.DeepEqual(old, s.Service) {
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
		r.services[serviceName{s.VRF, s.Name}] = s.Service
	}
	return nil
}

// collectAndPublish runs the flow collector once and writes the state of
// every service, its backends and flows, and the flow table's counters.
// Writes the core refuses because the service is no longer configured
// are skipped.
func (r *Reconciler) collectAndPublish() error {
	r.mu.Lock()
	dp, core := r.dp, r.core
	svcs := make(map[serviceName]Service, len(r.services))
	for n, s := range r.services {
		svcs[n] = s
	}
	r.mu.Unlock()
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
	for n, s := range svcs {
		if err := r.publishService(n, s, flows[s.ServiceKey], update); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) publishService(n serviceName, s Service, flows []ServiceFlow, update func(string, ygot.GoStruct)) error {
	dp, core := r.dp, r.core
	total, per, err := dp.ServiceStats(s.ServiceKey)
	if err != nil {
		return err
	}
	base := fmt.Sprintf("/network-instances/network-instance[name=%s]/services/service[name=%s]", n.VRF, n.Name)
	el := eligible(s.Backends)
	local := 0
	for _, b := range el {
		if b.Local {
			local++
		}
	}
	st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State{
		Name:            ygot.String(n.Name),
		Address:         ygot.String(s.Addr.String()),
		Port:            ygot.Uint16(s.Port),
		Protocol:        gen.IsthmusNetworkInstance_ServiceProtocol_TCP,
		SessionAffinity: gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_NONE,
		Backends:        ygot.Uint32(uint32(len(el))),
		LocalBackends:   ygot.Uint32(uint32(local)),
		Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Counters{
			Packets: ygot.Uint64(total.Packets), Bytes: ygot.Uint64(total.Bytes), Flows: ygot.Uint64(total.Flows),
		},
	}
	if s.Proto == UDP {
		st.Protocol = gen.IsthmusNetworkInstance_ServiceProtocol_UDP
	}
	if s.Affinity {
		st.SessionAffinity = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_CLIENT_IP
	}
	// The flow list is replaced whole: flows that ended must not linger.
	if err := core.DeleteState(base + "/state/flows"); err != nil && !errors.Is(err, nos.ErrNoConfig) {
		return err
	}
	for _, f := range flows {
		fl, err := st.GetOrCreateFlows().NewFlow(st.Protocol, f.Client.Addr().String(), f.Client.Port(), s.Port)
		if err != nil {
			return fmt.Errorf("list flow %v of %s: %w", f.Client, base, err)
		}
		fl.BackendAddress = ygot.String(f.Backend.Addr().String())
		fl.BackendPort = ygot.Uint16(f.Backend.Port())
		fl.Idle = ygot.Uint32(uint32(f.Idle / time.Second))
		fl.State = flowStateEnum(f.State)
	}
	update(base+"/state", st)
	for _, b := range s.Backends {
		c := per[b.BackendKey]
		update(fmt.Sprintf("%s/backends/backend[address=%s][port=%d]/state", base, b.Addr, b.Port),
			&gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_State{
				Address: ygot.String(b.Addr.String()), Port: ygot.Uint16(b.Port),
				Weight: ygot.Uint8(max(b.Weight, 1)), Ready: ygot.Bool(b.Ready), Serving: ygot.Bool(b.Serving),
				Terminating: ygot.Bool(b.Terminating), Local: ygot.Bool(b.Local),
				Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_State_Counters{
					Packets: ygot.Uint64(c.Packets), Bytes: ygot.Uint64(c.Bytes), Flows: ygot.Uint64(c.Flows),
				},
			})
	}
	return nil
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
