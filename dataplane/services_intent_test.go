package dataplane

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// TestServicesOf: each port of a service is a forwarder service of its
// own; a named port with a target port sends every backend address to it.
func TestServicesOf(t *testing.T) {
	d := &gen.Device{}
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	ni.GetOrCreateConfig().Type = gen.IsthmusTypes_NetworkInstanceType_L3VRF
	svc := ni.GetOrCreateServices().GetOrCreateService("dns")
	c := svc.GetOrCreateConfig()
	c.Address, c.Protocol, c.Port = ygot.String("10.96.0.53"), gen.IsthmusNetworkInstance_ServiceProtocol_UDP, ygot.Uint16(53)
	c.SessionAffinity = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_SessionAffinity_CLIENT_IP
	b1 := svc.GetOrCreateBackends().GetOrCreateBackend("10.1.0.3", 5353).GetOrCreateConfig()
	b1.Weight = ygot.Uint8(3)
	b2 := svc.GetOrCreateBackends().GetOrCreateBackend("10.1.0.2", 5353).GetOrCreateConfig()
	b2.Ready, b2.Serving, b2.Terminating = ygot.Bool(false), ygot.Bool(true), ygot.Bool(true)
	web := ni.GetOrCreateServices().GetOrCreateService("web")
	wc := web.GetOrCreateConfig()
	wc.Address = ygot.String("10.96.0.80")
	for _, p := range []struct {
		name   string
		port   uint16
		target uint16
	}{{"http", 80, 0}, {"https", 443, 8443}} {
		pc := web.GetOrCreatePorts().GetOrCreatePort(p.name).GetOrCreateConfig()
		pc.Name, pc.Protocol, pc.Port = ygot.String(p.name), gen.IsthmusNetworkInstance_ServiceProtocol_TCP, ygot.Uint16(p.port)
		if p.target != 0 {
			pc.TargetPort = ygot.Uint16(p.target)
		}
	}
	web.GetOrCreateBackends().GetOrCreateBackend("10.1.0.3", 8080)
	d.PopulateDefaults()
	pods := map[string]podIntent{"p1": {VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.3/32")}, "p2": {VRF: "blue", Prefix: netip.MustParsePrefix("10.1.0.2/32")}}
	got, err := servicesOf(d, pods)
	if err != nil {
		t.Fatal(err)
	}
	want := []namedService{{Name: "dns", Service: Service{
		ServiceKey: ServiceKey{VRF: "red", Addr: netip.MustParseAddr("10.96.0.53"), Proto: UDP, Port: 53},
		Affinity:   true,
		Backends: []Backend{
			{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.2"), Port: 5353}, Weight: 1, Serving: true, Terminating: true},
			{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.3"), Port: 5353}, Weight: 3, Ready: true, Serving: true, Local: true},
		},
	}, Configured: []BackendKey{{netip.MustParseAddr("10.1.0.2"), 5353}, {netip.MustParseAddr("10.1.0.3"), 5353}}}}
	webBackend := func(port uint16) Backend {
		return Backend{BackendKey: BackendKey{Addr: netip.MustParseAddr("10.1.0.3"), Port: port}, Weight: 1, Ready: true, Serving: true, Local: true}
	}
	webKey := BackendKey{netip.MustParseAddr("10.1.0.3"), 8080}
	want = append(want,
		namedService{Name: "web", Port: "http", Service: Service{
			ServiceKey: ServiceKey{VRF: "red", Addr: netip.MustParseAddr("10.96.0.80"), Proto: TCP, Port: 80},
			Backends:   []Backend{webBackend(8080)},
		}, Configured: []BackendKey{webKey}},
		namedService{Name: "web", Port: "https", Service: Service{
			ServiceKey: ServiceKey{VRF: "red", Addr: netip.MustParseAddr("10.96.0.80"), Proto: TCP, Port: 443},
			Backends:   []Backend{webBackend(8443)},
		}, TargetPort: 8443, Configured: []BackendKey{webKey}})
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("servicesOf (-want +got):\n%s", diff)
	}
}

// TestServiceVRFLabel: a per-prefix VRF with a service still has its VRF
// label programmed, since the service address is advertised with it.
func TestServiceVRFLabel(t *testing.T) {
	d := &gen.Device{}
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	c := ni.GetOrCreateConfig()
	c.Type, c.LabelAllocationMode = gen.IsthmusTypes_NetworkInstanceType_L3VRF, gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX
	in, err := intentOf(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := in.labelTargets()[labelTarget{VRF: "red"}]; ok {
		t.Fatal("a per-prefix VRF without services has a VRF label")
	}
	sc := ni.GetOrCreateServices().GetOrCreateService("web").GetOrCreateConfig()
	sc.Address, sc.Protocol, sc.Port = ygot.String("10.96.0.10"), gen.IsthmusNetworkInstance_ServiceProtocol_TCP, ygot.Uint16(80)
	if in, err = intentOf(d); err != nil {
		t.Fatal(err)
	}
	if _, ok := in.labelTargets()[labelTarget{VRF: "red"}]; !ok {
		t.Error("a per-prefix VRF with a service has no VRF label")
	}
}
