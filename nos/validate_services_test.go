package nos

import (
	"errors"
	"strings"
	"testing"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/openconfig/ygot/ygot"
)

// serviceDevice is VRF red (pool 10.1.0.0/24) with service web: TCP
// 10.96.0.10:80 → 10.1.0.2:8080 and 10.1.0.3:8080.
func serviceDevice() *gen.Device {
	d := &gen.Device{}
	ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
	c := ni.GetOrCreateConfig()
	c.Name = ygot.String("red")
	c.Type = gen.IsthmusTypes_NetworkInstanceType_L3VRF
	c.RouteDistinguisher = ygot.String("65000:1")
	ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
	addService(ni, "web", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80)
	addBackend(ni, "web", "10.1.0.2", 8080)
	addBackend(ni, "web", "10.1.0.3", 8080)
	return d
}

func addService(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, name, vip string, proto gen.E_IsthmusNetworkInstance_ServiceProtocol, port uint16) {
	c := ni.GetOrCreateServices().GetOrCreateService(name).GetOrCreateConfig()
	c.Name, c.Address, c.Protocol, c.Port = ygot.String(name), ygot.String(vip), proto, ygot.Uint16(port)
}

func addPort(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, svc, name string, proto gen.E_IsthmusNetworkInstance_ServiceProtocol, port, target uint16) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Ports_Port_Config {
	c := ni.GetOrCreateServices().GetOrCreateService(svc).GetOrCreatePorts().GetOrCreatePort(name).GetOrCreateConfig()
	c.Name, c.Protocol, c.Port = ygot.String(name), proto, ygot.Uint16(port)
	if target != 0 {
		c.TargetPort = ygot.Uint16(target)
	}
	return c
}

func addBackend(ni *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, svc, addr string, port uint16) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Config {
	c := ni.GetOrCreateServices().GetOrCreateService(svc).GetOrCreateBackends().GetOrCreateBackend(addr, port).GetOrCreateConfig()
	c.Address, c.Port = ygot.String(addr), ygot.Uint16(port)
	return c
}

func TestValidateServices(t *testing.T) {
	const red = "/network-instances/network-instance[name=red]"
	const web = red + "/services/service[name=web]"
	red1 := func(d *gen.Device) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance {
		return d.NetworkInstances.NetworkInstance["red"]
	}
	for _, tc := range []struct {
		name     string
		edit     func(d *gen.Device)
		old      func(d *gen.Device) // running config, when the rule names the touched entry
		wantPath string              // "" means valid
		wantText string
	}{
		{name: "valid", edit: func(d *gen.Device) {}},
		{name: "same vip other port", edit: func(d *gen.Device) {
			addService(red1(d), "web2", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443)
		}},
		{name: "same vip and port other protocol", edit: func(d *gen.Device) {
			addService(red1(d), "dns", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_UDP, 80)
		}},
		{name: "vip inside a pod pool", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.Address = ygot.String("10.1.0.200")
		}, wantPath: web + "/config/address", wantText: "inside pod address pool 10.1.0.0/24"},
		{name: "vip not an address", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.Address = ygot.String("0.0.0.0")
		}, wantPath: web + "/config/address", wantText: "not a unicast"},
		{name: "no vip", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.Address = nil
		}, wantPath: web + "/config/address", wantText: "needs a virtual address"},
		{name: "no protocol", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.Protocol = 0
		}, wantPath: web + "/config/protocol", wantText: "needs a protocol"},
		{name: "port 0", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.Port = ygot.Uint16(0)
		}, wantPath: web + "/config/port", wantText: "1..65535"},
		{name: "no port", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.Port = nil
		}, wantPath: web + "/config/port", wantText: "1..65535"},
		{name: "duplicate vip port protocol names the new one", edit: func(d *gen.Device) {
			addService(red1(d), "aaa", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80)
		}, old: func(d *gen.Device) {}, wantPath: red + "/services/service[name=aaa]/config", wantText: `already the service "web"`},
		{name: "duplicate vip port protocol both new", edit: func(d *gen.Device) {
			addService(red1(d), "zzz", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80)
		}, wantPath: red + "/services/service[name=zzz]/config", wantText: `already the service "web"`},
		{name: "backend in another vrf's pool", edit: func(d *gen.Device) {
			blue := d.NetworkInstances.GetOrCreateNetworkInstance("blue")
			c := blue.GetOrCreateConfig()
			c.Name, c.Type, c.RouteDistinguisher = ygot.String("blue"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("65000:2")
			blue.GetOrCreateAddressPools().GetOrCreateAddressPool("10.2.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.2.0.0/24")
			addBackend(red1(d), "web", "10.2.0.9", 8080)
		}, wantPath: web + "/backends/backend[address=10.2.0.9][port=8080]/config/address", wantText: `outside network instance "red": it is in pool 10.2.0.0/24 of network instance "blue"`},
		{name: "backend on another host (outside this host's pools)", edit: func(d *gen.Device) {
			addBackend(red1(d), "web", "10.3.0.9", 8080)
		}},
		{name: "backend port 0", edit: func(d *gen.Device) {
			addBackend(red1(d), "web", "10.1.0.4", 0)
		}, wantPath: web + "/backends/backend[address=10.1.0.4][port=0]/config/port", wantText: "1..65535"},
		{name: "backend ready and terminating", edit: func(d *gen.Device) {
			c := addBackend(red1(d), "web", "10.1.0.4", 8080)
			c.Terminating = ygot.Bool(true)
		}, wantPath: web + "/backends/backend[address=10.1.0.4][port=8080]/config/ready", wantText: "terminating"},
		{name: "backend terminating not ready", edit: func(d *gen.Device) {
			c := addBackend(red1(d), "web", "10.1.0.4", 8080)
			c.Terminating, c.Ready = ygot.Bool(true), ygot.Bool(false)
		}},
		{name: "named ports only", edit: func(d *gen.Device) {
			c := red1(d).Services.Service["web"].Config
			c.Port, c.Protocol = nil, 0
			addPort(red1(d), "web", "http", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80, 0)
			addPort(red1(d), "https", "https", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443, 8443)
			red1(d).Services.Service["https"].Config = &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config{Name: ygot.String("https"), Address: ygot.String("10.96.0.11")}
		}},
		{name: "unnamed and named ports", edit: func(d *gen.Device) {
			addPort(red1(d), "web", "https", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443, 8443)
			addPort(red1(d), "web", "dns", gen.IsthmusNetworkInstance_ServiceProtocol_UDP, 53, 0)
		}},
		{name: "no port at all", edit: func(d *gen.Device) {
			c := red1(d).Services.Service["web"].Config
			c.Port, c.Protocol = nil, 0
		}, wantPath: web + "/config/port", wantText: "config/port or ports/port"},
		{name: "named port 0", edit: func(d *gen.Device) {
			addPort(red1(d), "web", "https", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 0, 0)
		}, wantPath: web + "/ports/port[name=https]/config/port", wantText: "1..65535"},
		{name: "named port without protocol", edit: func(d *gen.Device) {
			addPort(red1(d), "web", "https", 0, 443, 0)
		}, wantPath: web + "/ports/port[name=https]/config/protocol", wantText: "needs a protocol"},
		{name: "target port 0", edit: func(d *gen.Device) {
			addPort(red1(d), "web", "https", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443, 0).TargetPort = ygot.Uint16(0)
		}, wantPath: web + "/ports/port[name=https]/config/target-port", wantText: "1..65535"},
		{name: "named port repeats the unnamed one", edit: func(d *gen.Device) {
			addPort(red1(d), "web", "http", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80, 0)
		}, wantPath: web + "/ports/port[name=http]/config", wantText: `TCP 10.96.0.10:80 is already the service "web"`},
		{name: "named port of another service on the same vip:port", edit: func(d *gen.Device) {
			addService(red1(d), "zzz", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_UDP, 53)
			addPort(red1(d), "zzz", "alt", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80, 0)
		}, wantPath: red + "/services/service[name=zzz]/ports/port[name=alt]/config", wantText: `already the service "web"`},
		{name: "new port names itself, not the running one", edit: func(d *gen.Device) {
			addPort(red1(d), "web", "https", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443, 8443)
			addService(red1(d), "aaa", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443)
		}, old: func(d *gen.Device) {
			addPort(d.NetworkInstances.NetworkInstance["red"], "web", "https", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443, 8443)
		}, wantPath: red + "/services/service[name=aaa]/config", wantText: `already port "https" of the service "web"`},
		{name: "target port folds two backends into one", edit: func(d *gen.Device) {
			addPort(red1(d), "web", "https", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 443, 8443)
			addBackend(red1(d), "web", "10.1.0.2", 8081)
		}, wantPath: web + "/backends/backend[address=10.1.0.2][port=8081]", wantText: "would be the same 10.1.0.2:8443"},
		{name: "external traffic to all backends", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.ExternalTrafficScope = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_ALL
		}},
		{name: "external traffic local", edit: func(d *gen.Device) {
			red1(d).Services.Service["web"].Config.ExternalTrafficScope = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Config_ExternalTrafficScope_LOCAL
		}},
		{name: "services in an MPLSoMPLS vrf", edit: func(d *gen.Device) {
			red1(d).Config.Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
		}},
		{name: "service in the default instance", edit: func(d *gen.Device) {
			ni := d.NetworkInstances.GetOrCreateNetworkInstance("default")
			ni.GetOrCreateConfig().Name = ygot.String("default")
			ni.Config.Type = gen.IsthmusTypes_NetworkInstanceType_DEFAULT
			addService(ni, "x", "10.96.0.1", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80)
		}, wantPath: "/network-instances/network-instance[name=default]/services", wantText: "only an L3VRF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := serviceDevice()
			tc.edit(d)
			var old *gen.Device
			if tc.old != nil {
				old = serviceDevice()
				tc.old(old)
			}
			err := validateSemantics(old, d)
			if tc.wantPath == "" {
				if err != nil {
					t.Fatalf("rejected a valid configuration: %v", err)
				}
				return
			}
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an invalid-argument path error", err)
			}
			if pe.Path != tc.wantPath {
				t.Errorf("path %q, want %q", pe.Path, tc.wantPath)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
		})
	}
}
