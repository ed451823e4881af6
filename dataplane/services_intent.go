package dataplane

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// namedService is one port of a configured service with the names that
// locate its state: VRF (in ServiceKey), service name and port name ("" for
// the service's unnamed port). Each port is a Service of its own in the
// forwarder.
type namedService struct {
	Name string
	Port string
	Service
	// TargetPort is the port's target port, 0 for each backend's own.
	TargetPort uint16
	// Configured are the configured keys of Backends, in the same order:
	// with a target port, a backend's key in the forwarder has that port.
	Configured []BackendKey
}

// servicesOf translates the services of every VRF into the dataplane's
// terms, one per port. A backend is local when its address is the address
// of a pod interface of the same VRF on this host (pods). Errors name the
// path.
func servicesOf(d *gen.Device, pods map[string]podIntent) ([]namedService, error) {
	local := map[string]map[netip.Addr]bool{}
	for _, p := range pods {
		if !p.Prefix.IsValid() {
			continue
		}
		if local[p.VRF] == nil {
			local[p.VRF] = map[netip.Addr]bool{}
		}
		local[p.VRF][p.Prefix.Addr()] = true
	}
	var out []namedService
	for vrf, ni := range nos.NetworkInstances(d) {
		if ni.GetConfig().GetType() != gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			continue
		}
		for name, svc := range nos.Services(ni) {
			path := fmt.Sprintf("network-instances/network-instance[name=%s]/services/service[name=%s]", vrf, name)
			cfg := svc.GetConfig()
			vip, err := netip.ParseAddr(cfg.GetAddress())
			if err != nil || !vip.Is4() {
				return nil, fmt.Errorf("%s/config/address: %q is not an ipv4 address", path, cfg.GetAddress())
			}
			var bes []Backend
			for k, be := range nos.Backends(svc) {
				a, err := netip.ParseAddr(k.Address)
				if err != nil || !a.Is4() {
					return nil, fmt.Errorf("%s/backends/backend[address=%s][port=%d]: not an ipv4 address", path, k.Address, k.Port)
				}
				bc := be.GetConfig()
				bes = append(bes, Backend{
					BackendKey:  BackendKey{Addr: a, Port: k.Port},
					Weight:      bc.GetWeight(),
					Ready:       bc.GetReady(),
					Serving:     bc.GetServing(),
					Terminating: bc.GetTerminating(),
					Local:       local[vrf][a],
				})
			}
			sort.Slice(bes, func(i, j int) bool {
				if c := bes[i].Addr.Compare(bes[j].Addr); c != 0 {
					return c < 0
				}
				return bes[i].Port < bes[j].Port
			})
			for _, sp := range nos.ServicePorts(svc) {
				s := namedService{Name: name, Port: sp.Name, TargetPort: sp.TargetPort, Service: Service{
					ServiceKey:  ServiceKey{VRF: vrf, Addr: vip, Proto: TCP, Port: sp.Port},
					Affinity:    cfg.GetSessionAffinity() == gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_CLIENT_IP,
					ExternalAll: cfg.GetExternalTrafficScope() == gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_ALL,
				}}
				if sp.Protocol == gen.IsthmusNetworkInstance_ServiceProtocol_UDP {
					s.Proto = UDP
				}
				for _, b := range bes {
					s.Configured = append(s.Configured, b.BackendKey)
					if sp.TargetPort != 0 {
						b.Port = sp.TargetPort
					}
					s.Backends = append(s.Backends, b)
				}
				out = append(out, s)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].VRF != out[j].VRF {
			return out[i].VRF < out[j].VRF
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Port < out[j].Port
	})
	return out, nil
}

// serviceVRFs returns the VRFs of vrfs that have services, nil for none.
func serviceVRFs(d *gen.Device, vrfs map[string]vrfIntent) map[string]bool {
	var out map[string]bool
	for name := range vrfs {
		if len(nos.Services(nos.NetworkInstances(d)[name])) > 0 {
			if out == nil {
				out = map[string]bool{}
			}
			out[name] = true
		}
	}
	return out
}
