package nos

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// externalDevice is VRFs red (pool 10.1.0.0/24, the default pod network,
// SNAT ports 20000..20999) and blue (pool 10.1.0.0/24 too, ports
// 21000..21999, mode DROP), with tunnel source 192.0.2.1.
func externalDevice() *gen.Device {
	d := &gen.Device{}
	for i, name := range []string{"red", "blue"} {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance(name)
		c := ni.GetOrCreateConfig()
		c.Name, c.Type = ygot.String(name), gen.IsthmusTypes_NetworkInstanceType_L3VRF
		c.RouteDistinguisher = ygot.String([]string{"65000:1", "65000:2"}[i])
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
		e := ni.GetOrCreateExternal().GetOrCreateConfig()
		e.PortMin, e.PortMax = ygot.Uint16(uint16(20000+1000*i)), ygot.Uint16(uint16(20999+1000*i))
	}
	d.NetworkInstances.NetworkInstance["red"].External.Config.DefaultPodNetwork = ygot.Bool(true)
	d.GetOrCreateTunnel().GetOrCreateConfig().SourceAddress = ygot.String("192.0.2.1")
	d.Tunnel.Config.UnderlayInterface = ygot.String("ul")
	ul := d.GetOrCreateInterfaces().GetOrCreateInterface("ul").GetOrCreateConfig()
	ul.Name, ul.Type = ygot.String("ul"), gen.IsthmusTypes_InterfaceType_UNDERLAY
	return d
}

func extConfig(d *gen.Device, vrf string) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_External_Config {
	return d.NetworkInstances.NetworkInstance[vrf].GetOrCreateExternal().GetOrCreateConfig()
}

func bindFloating(d *gen.Device, vrf, addr, pod string) {
	c := d.NetworkInstances.NetworkInstance[vrf].GetOrCreateExternal().GetOrCreateFloatingIps().GetOrCreateFloatingIp(addr).GetOrCreateConfig()
	c.Address, c.PodAddress = ygot.String(addr), ygot.String(pod)
}

func TestValidateExternal(t *testing.T) {
	const red = "/network-instances/network-instance[name=red]/external"
	const blue = "/network-instances/network-instance[name=blue]/external"
	for _, tc := range []struct {
		name     string
		edit     func(d *gen.Device)
		old      func(d *gen.Device)
		wantPath string // "" means valid
		wantText string
	}{
		{name: "valid", edit: func(d *gen.Device) {}},
		{name: "blue snat with its own range", edit: func(d *gen.Device) {
			extConfig(d, "blue").Mode = gen.IsthmusExternal_ExternalMode_SNAT
		}},
		{name: "overlapping ranges name the changed vrf", edit: func(d *gen.Device) {
			extConfig(d, "red").PortMax = ygot.Uint16(21000)
		}, old: func(d *gen.Device) {}, wantPath: red + "/config/port-min", wantText: `overlap the SNAT ports 21000..21999 of network instance "blue"`},
		{name: "overlapping ranges name the other changed vrf", edit: func(d *gen.Device) {
			extConfig(d, "blue").PortMin = ygot.Uint16(20999)
		}, old: func(d *gen.Device) {}, wantPath: blue + "/config/port-min", wantText: `of network instance "red"`},
		{name: "max below min", edit: func(d *gen.Device) {
			extConfig(d, "red").PortMax = ygot.Uint16(19999)
		}, wantPath: red + "/config/port-max", wantText: "below port-min"},
		{name: "half a range", edit: func(d *gen.Device) {
			extConfig(d, "red").PortMax = nil
		}, wantPath: red + "/config/port-max", wantText: "both port-min and port-max"},
		{name: "snat without a range", edit: func(d *gen.Device) {
			c := extConfig(d, "red")
			c.PortMin, c.PortMax = nil, nil
		}, wantPath: red + "/config/port-min", wantText: "needs a port range"},
		{name: "drop without a range", edit: func(d *gen.Device) {
			c := extConfig(d, "red")
			c.PortMin, c.PortMax, c.Mode = nil, nil, gen.IsthmusExternal_ExternalMode_DROP
		}},
		{name: "snat without any address", edit: func(d *gen.Device) {
			d.Tunnel.Config.SourceAddress = nil
		}, wantPath: red + "/config/snat-address", wantText: "needs an address"},
		{name: "snat with its own address", edit: func(d *gen.Device) {
			d.Tunnel.Config.SourceAddress = nil
			extConfig(d, "red").SnatAddress = ygot.String("198.51.100.1")
		}},
		{name: "snat without an underlay", edit: func(d *gen.Device) {
			d.Tunnel.Config.UnderlayInterface = nil
		}, wantPath: red + "/config/mode", wantText: "needs /tunnel/config/underlay-interface"},
		{name: "snat address not unicast", edit: func(d *gen.Device) {
			extConfig(d, "red").SnatAddress = ygot.String("224.0.0.1")
		}, wantPath: red + "/config/snat-address", wantText: "not a unicast IPv4 address"},
		{name: "two default pod networks", edit: func(d *gen.Device) {
			extConfig(d, "blue").DefaultPodNetwork = ygot.Bool(true)
		}, old: func(d *gen.Device) {}, wantPath: blue + "/config/default-pod-network", wantText: `"red" is already the default pod network`},
		{name: "host access on overlapping pools", edit: func(d *gen.Device) {
			extConfig(d, "blue").HostAccess = ygot.Bool(true)
		}, wantPath: red + "/config/host-access", wantText: `overlaps pool 10.1.0.0/24 of network instance "blue"`},
		{name: "host access off for the default network", edit: func(d *gen.Device) {
			extConfig(d, "blue").HostAccess = ygot.Bool(true)
			extConfig(d, "red").HostAccess = ygot.Bool(false)
		}},
		{name: "floating ip bound", edit: func(d *gen.Device) {
			extConfig(d, "red").FloatingPool = []string{"198.51.100.0/28"}
			bindFloating(d, "red", "198.51.100.5", "10.1.0.2")
		}},
		{name: "floating ip outside its pool", edit: func(d *gen.Device) {
			extConfig(d, "red").FloatingPool = []string{"198.51.100.0/28"}
			bindFloating(d, "red", "198.51.100.20", "10.1.0.2")
		}, wantPath: red + "/floating-ips/floating-ip[address=198.51.100.20]/config/address", wantText: "outside the floating pools"},
		{name: "floating ip in another vrf's pool", edit: func(d *gen.Device) {
			extConfig(d, "blue").FloatingPool = []string{"198.51.100.0/28"}
			bindFloating(d, "red", "198.51.100.5", "10.1.0.2")
		}, wantPath: red + "/floating-ips/floating-ip[address=198.51.100.5]/config/address", wantText: `outside the floating pools of network instance "red"`},
		{name: "floating pool overlapping pod pools", edit: func(d *gen.Device) {
			extConfig(d, "red").FloatingPool = []string{"10.1.0.0/28"}
		}, wantPath: red + "/config/floating-pool", wantText: `overlaps pod pool 10.1.0.0/24 of network instance "blue"`},
		{name: "floating pools overlapping", edit: func(d *gen.Device) {
			extConfig(d, "red").FloatingPool = []string{"198.51.100.0/28"}
			extConfig(d, "blue").FloatingPool = []string{"198.51.100.0/24"}
		}, wantPath: red + "/config/floating-pool", wantText: `overlaps floating pool 198.51.100.0/24 of network instance "blue"`},
		{name: "floating ip bound outside the pod pools", edit: func(d *gen.Device) {
			extConfig(d, "red").FloatingPool = []string{"198.51.100.0/28"}
			bindFloating(d, "red", "198.51.100.5", "10.9.0.2")
		}, wantPath: red + "/floating-ips/floating-ip[address=198.51.100.5]/config/pod-address", wantText: "outside the pod pools"},
		{name: "floating pool holding the tunnel source", edit: func(d *gen.Device) {
			extConfig(d, "red").FloatingPool = []string{"192.0.2.0/28"}
		}, wantPath: red + "/config/floating-pool", wantText: "holds the tunnel source 192.0.2.1"},
		{name: "floating pool holding a SNAT address", edit: func(d *gen.Device) {
			extConfig(d, "blue").SnatAddress = ygot.String("198.51.100.9")
			extConfig(d, "red").FloatingPool = []string{"198.51.100.0/28"}
		}, wantPath: red + "/config/floating-pool", wantText: `holds the SNAT address 198.51.100.9 of network instance "blue"`},
		{name: "pod with two floating ips", edit: func(d *gen.Device) {
			extConfig(d, "red").FloatingPool = []string{"198.51.100.0/28"}
			bindFloating(d, "red", "198.51.100.5", "10.1.0.2")
			bindFloating(d, "red", "198.51.100.6", "10.1.0.2")
		}, wantPath: red + "/floating-ips/floating-ip[address=198.51.100.6]/config/pod-address", wantText: "already has floating IP 198.51.100.5"},
		{name: "external in the default instance", edit: func(d *gen.Device) {
			ni := d.NetworkInstances.GetOrCreateNetworkInstance("default")
			ni.GetOrCreateConfig().Name = ygot.String("default")
			ni.Config.Type = gen.IsthmusTypes_NetworkInstanceType_DEFAULT
			ni.GetOrCreateExternal().GetOrCreateConfig().Mode = gen.IsthmusExternal_ExternalMode_DROP
		}, wantPath: "/network-instances/network-instance[name=default]/external", wantText: "only an L3VRF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := externalDevice()
			tc.edit(d)
			var old *gen.Device
			if tc.old != nil {
				old = externalDevice()
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

// TestExternalDefaults: the default pod network has SNAT and host access
// unless configured otherwise, other VRFs neither; the address defaults to
// the tunnel source.
func TestExternalDefaults(t *testing.T) {
	d := externalDevice()
	red := External(d, d.NetworkInstances.NetworkInstance["red"])
	if !red.SNAT || !red.HostAccess || red.Address.String() != "192.0.2.1" || red.PortMin != 20000 || red.PortMax != 20999 {
		t.Errorf("red %+v, want SNAT and host access from 192.0.2.1 ports 20000..20999", red)
	}
	blue := External(d, d.NetworkInstances.NetworkInstance["blue"])
	if blue.SNAT || blue.HostAccess {
		t.Errorf("blue %+v, want neither SNAT nor host access", blue)
	}
	extConfig(d, "red").Mode = gen.IsthmusExternal_ExternalMode_DROP
	extConfig(d, "red").HostAccess = ygot.Bool(false)
	if red := External(d, d.NetworkInstances.NetworkInstance["red"]); red.SNAT || red.HostAccess {
		t.Errorf("red configured off: %+v", red)
	}
}

// TestValidateExternalScoped: a commit that changes one VRF is checked
// against the VRFs it now conflicts with, although the commit does not
// touch them (validation walks only related entries): SNAT ports, the
// default pod network, host access on overlapping pools, floating pools.
func TestValidateExternalScoped(t *testing.T) {
	c := newTestCore(t, t.TempDir())
	ctx := context.Background()
	if _, err := c.Commit(ctx, "test", func(d *gen.Device) error {
		*d = *externalDevice()
		extConfig(d, "blue").Mode = gen.IsthmusExternal_ExternalMode_DROP
		// blue's pool moves away from red's, so host access is possible.
		blue := d.NetworkInstances.NetworkInstance["blue"]
		blue.AddressPools = nil
		blue.GetOrCreateAddressPools().GetOrCreateAddressPool("10.2.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.2.0.0/24")
		return nil
	}); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	const blue = "/network-instances/network-instance[name=blue]/external/config"
	for _, tc := range []struct {
		name, wantPath, wantText string
		edit                     func(d *gen.Device)
	}{
		{"ports into red's", blue + "/port-min", `of network instance "red"`, func(d *gen.Device) {
			extConfig(d, "blue").PortMin, extConfig(d, "blue").PortMax = ygot.Uint16(20500), ygot.Uint16(21500)
		}},
		{"a second default pod network", blue + "/default-pod-network", `"red" is already`, func(d *gen.Device) {
			extConfig(d, "blue").DefaultPodNetwork = ygot.Bool(true)
		}},
		{"host access on a pool overlapping red's", "/network-instances/network-instance[name=red]/external/config/host-access", "overlaps pool", func(d *gen.Device) {
			extConfig(d, "blue").HostAccess = ygot.Bool(true)
			d.NetworkInstances.NetworkInstance["blue"].GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/25").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/25")
		}},
		{"a floating pool over red's pods", blue + "/floating-pool", `of network instance "red"`, func(d *gen.Device) {
			extConfig(d, "blue").FloatingPool = []string{"10.1.0.128/28"}
		}},
	} {
		_, err := c.Commit(ctx, "test", func(d *gen.Device) error { tc.edit(d); return nil })
		var pe *PathError
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want an invalid-argument path error", tc.name, err)
			continue
		}
		if pe.Path != tc.wantPath || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("%s: %v; want %s saying %q", tc.name, err, tc.wantPath, tc.wantText)
		}
	}
}
