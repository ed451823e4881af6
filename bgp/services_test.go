package bgp

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// serviceTree is VRF red with pod 10.1.0.2 on this host and service web
// (10.96.0.10) whose backends are that pod and 10.2.0.3 on another host.
func serviceTree() *gen.Device {
	d := &gen.Device{}
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	c := ni.GetOrCreateConfig()
	c.Name, c.Type = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF
	c.RouteDistinguisher, c.ExportRouteTarget = ygot.String("10.0.0.1:1"), []string{"65000:1"}
	c.LabelAllocationMode = gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX
	pc := d.GetOrCreateInterfaces().GetOrCreateInterface("pa").GetOrCreateConfig()
	pc.Name, pc.Type, pc.NetworkInstance, pc.Ipv4Address = ygot.String("pa"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red"), ygot.String("10.1.0.2/32")
	svc := ni.GetOrCreateServices().GetOrCreateService("web")
	sc := svc.GetOrCreateConfig()
	sc.Address, sc.Protocol, sc.Port = ygot.String("10.96.0.10"), gen.IsthmusNetworkInstance_ServiceProtocol_TCP, ygot.Uint16(80)
	svc.GetOrCreateBackends().GetOrCreateBackend("10.1.0.2", 8080)
	svc.GetOrCreateBackends().GetOrCreateBackend("10.2.0.3", 8080)
	d.GetOrCreateTunnel().GetOrCreateConfig().SourceAddress = ygot.String("192.0.2.1")
	return d
}

func backendCfg(d *gen.Device, addr string) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Config {
	return nos.Backends(nos.Services(nos.NetworkInstances(d)["red"])["web"])[gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Key{Address: addr, Port: 8080}].GetOrCreateConfig()
}

func scopeAll(d *gen.Device) {
	nos.Services(nos.NetworkInstances(d)["red"])["web"].Config.ExternalTrafficScope = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_ALL
}

func TestServiceRoutes(t *testing.T) {
	vip := netip.MustParsePrefix("10.96.0.10/32")
	for _, tc := range []struct {
		name      string
		edit      func(d *gen.Device)
		advertise bool
	}{
		{"a local backend serves", func(d *gen.Device) {}, true},
		{"the local backend is not ready", func(d *gen.Device) { backendCfg(d, "10.1.0.2").Ready = ygot.Bool(false) }, false},
		{"local terminating while a remote one is ready", func(d *gen.Device) {
			c := backendCfg(d, "10.1.0.2")
			c.Ready, c.Terminating = ygot.Bool(false), ygot.Bool(true)
		}, false},
		{"local terminating and serving while none is ready", func(d *gen.Device) {
			c := backendCfg(d, "10.1.0.2")
			c.Ready, c.Terminating = ygot.Bool(false), ygot.Bool(true)
			backendCfg(d, "10.2.0.3").Ready = ygot.Bool(false)
		}, true},
		{"the last local backend is removed", func(d *gen.Device) {
			delete(nos.Services(nos.NetworkInstances(d)["red"])["web"].Backends.Backend,
				gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Key{Address: "10.1.0.2", Port: 8080})
		}, false},
		{"the local pod is disabled", func(d *gen.Device) {
			d.Interfaces.Interface["pa"].Config.Enabled = ygot.Bool(false)
		}, false},
		{"external traffic to all backends: only a remote one serves", func(d *gen.Device) {
			scopeAll(d)
			delete(nos.Services(nos.NetworkInstances(d)["red"])["web"].Backends.Backend,
				gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Key{Address: "10.1.0.2", Port: 8080})
		}, true},
		{"external traffic to all backends: none is ready", func(d *gen.Device) {
			scopeAll(d)
			backendCfg(d, "10.1.0.2").Ready = ygot.Bool(false)
			backendCfg(d, "10.2.0.3").Ready = ygot.Bool(false)
		}, false},
		{"external traffic to all backends: a remote terminating one serves while none is ready", func(d *gen.Device) {
			scopeAll(d)
			backendCfg(d, "10.1.0.2").Ready = ygot.Bool(false)
			c := backendCfg(d, "10.2.0.3")
			c.Ready, c.Terminating = ygot.Bool(false), ygot.Bool(true)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := serviceTree()
			tc.edit(d)
			in, err := intentOf(d, local{})
			if err != nil {
				t.Fatal(err)
			}
			if err := serviceRoutes(in, d); err != nil {
				t.Fatal(err)
			}
			routes, err := exportRoutes(in, func(vrf string, mode labelMode, p netip.Prefix) (uint32, error) {
				if mode == labelPerPrefix {
					return 200, nil
				}
				return 100, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			r, ok := routes[exportKey{"red", vip}]
			if ok != tc.advertise {
				t.Fatalf("service address advertised: %v, want %v (routes %v)", ok, tc.advertise, routes)
			}
			if ok && (r.label != 100 || r.nexthop != netip.MustParseAddr("192.0.2.1") || len(r.rts) != 1 || r.rd != in.vrfs["red"].rd) {
				t.Errorf("service route %+v: want the VRF label 100, next hop 192.0.2.1, the VRF's RD and RT", r)
			}
			if !slices.Contains(in.vrfs["red"].routes, netip.MustParsePrefix("10.1.0.2/32")) && tc.name == "a local backend serves" {
				t.Error("the pod route went missing")
			}
		})
	}
}
