package dataplane

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

func device(edits ...func(*gen.Device)) *gen.Device {
	d := &gen.Device{}
	for _, e := range edits {
		e(d)
	}
	return d
}

func withVRF(name string, encap gen.E_IsthmusTypes_Encapsulation, mode gen.E_IsthmusTypes_LabelAllocationMode) func(*gen.Device) {
	return func(d *gen.Device) {
		c := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance(name).GetOrCreateConfig()
		c.Name, c.Type, c.Encapsulation, c.LabelAllocationMode = ygot.String(name), gen.IsthmusTypes_NetworkInstanceType_L3VRF, encap, mode
	}
}

func withPod(name, vrf, addr, mac string, mtu uint16) func(*gen.Device) {
	return func(d *gen.Device) {
		c := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
		c.Name, c.Type, c.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String(vrf)
		if addr != "" {
			c.Ipv4Address = ygot.String(addr)
		}
		if mtu != 0 {
			c.Mtu = ygot.Uint16(mtu)
		}
		c.GetOrCreatePod().PeerMacAddress = ygot.String(mac)
	}
}

func withTunnel(src string, mtu uint16) func(*gen.Device) {
	return func(d *gen.Device) {
		c := d.GetOrCreateTunnel().GetOrCreateConfig()
		c.SourceAddress, c.UnderlayInterface, c.Mtu, c.UdpPort = ygot.String(src), ygot.String("eth0"), ygot.Uint16(mtu), ygot.Uint16(6635)
	}
}

func TestIntentOf(t *testing.T) {
	tests := []struct {
		name    string
		dev     *gen.Device
		want    intent
		labels  []labelTarget
		wantErr string
	}{{
		name: "empty",
		dev:  device(),
		want: intent{Neighbors: map[netip.Addr]uint32{}, VRFs: map[string]vrfIntent{}, Pods: map[string]podIntent{}, Statics: map[RouteKey]string{}},
	}, {
		name: "per-vrf udp vrf with a pod and a tunnel",
		dev: device(withVRF("red", gen.IsthmusTypes_Encapsulation_MPLS_OVER_UDP, gen.IsthmusTypes_LabelAllocationMode_PER_VRF),
			withPod("veth1", "red", "10.1.0.2/32", "0A:00:00:00:00:02", 1468), withTunnel("192.0.2.1", 1500)),
		want: intent{
			Tunnel:    &Tunnel{Source: netip.MustParseAddr("192.0.2.1"), UDPPort: 6635, Underlay: "eth0", MTU: 1500},
			Neighbors: map[netip.Addr]uint32{},
			VRFs:      map[string]vrfIntent{"red": {Encap: EncapMPLSoUDP}},
			Pods:      map[string]podIntent{"veth1": {VRF: "red", PeerMAC: "0a:00:00:00:00:02", Prefix: netip.MustParsePrefix("10.1.0.2/32"), MTU: 1468}},
			Statics:   map[RouteKey]string{},
		},
		labels: []labelTarget{{VRF: "red"}},
	}, {
		name: "per-prefix mpls vrf turns the xdp decapsulator on",
		dev: device(withVRF("blue", gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS, gen.IsthmusTypes_LabelAllocationMode_PER_PREFIX),
			withPod("veth2", "blue", "10.1.0.2/32", "0a:00:00:00:00:03", 0), withTunnel("192.0.2.1", 9000)),
		want: intent{
			Tunnel:    &Tunnel{Source: netip.MustParseAddr("192.0.2.1"), UDPPort: 6635, Underlay: "eth0", MTU: 9000, MPLSoMPLS: true},
			Neighbors: map[netip.Addr]uint32{},
			VRFs:      map[string]vrfIntent{"blue": {PerPrefix: true, Encap: EncapMPLSoMPLS}},
			Pods:      map[string]podIntent{"veth2": {VRF: "blue", PeerMAC: "0a:00:00:00:00:03", Prefix: netip.MustParsePrefix("10.1.0.2/32")}},
			Statics:   map[RouteKey]string{},
		},
		labels: []labelTarget{{VRF: "blue", Prefix: netip.MustParsePrefix("10.1.0.2/32"), Interface: "veth2"}},
	}, {
		name: "tunnel mtu from the underlay interface's configuration",
		dev: device(withVRF("red", 0, 0), withPod("veth1", "red", "", "0a:00:00:00:00:02", 8969), func(d *gen.Device) {
			c := d.GetOrCreateTunnel().GetOrCreateConfig()
			c.SourceAddress, c.UnderlayInterface = ygot.String("192.0.2.1"), ygot.String("eth0")
			u := d.GetOrCreateInterfaces().GetOrCreateInterface("eth0").GetOrCreateConfig()
			u.Name, u.Type, u.Mtu = ygot.String("eth0"), gen.IsthmusTypes_InterfaceType_UNDERLAY, ygot.Uint16(9001)
		}),
		want: intent{
			Tunnel:    &Tunnel{Source: netip.MustParseAddr("192.0.2.1"), UDPPort: 6635, Underlay: "eth0", MTU: 9001},
			Neighbors: map[netip.Addr]uint32{},
			VRFs:      map[string]vrfIntent{"red": {Encap: EncapMPLSoUDP}},
			Pods:      map[string]podIntent{"veth1": {VRF: "red", PeerMAC: "0a:00:00:00:00:02", MTU: 8969}},
			Statics:   map[RouteKey]string{},
		},
		labels: []labelTarget{{VRF: "red"}},
	}, {
		name:    "bad peer mac",
		dev:     device(withVRF("red", 0, 0), withPod("veth1", "red", "", "zz", 0)),
		wantErr: "interfaces/interface[name=veth1]/config/pod/peer-mac-address",
	}, {
		name:    "pod mtu leaves no room for mpls over udp",
		dev:     device(withVRF("red", 0, 0), withPod("veth1", "red", "", "0a:00:00:00:00:02", 1500), withTunnel("192.0.2.1", 1500)),
		wantErr: "interfaces/interface[name=veth1]/config/mtu: 1500 leaves no room",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := intentOf(tt.dev)
			if err == nil {
				err = got.validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("intent (-want +got):\n%s", diff)
			}
			var labels []labelTarget
			for lt := range got.labelTargets() {
				labels = append(labels, lt)
			}
			if diff := cmp.Diff(tt.labels, labels, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
		})
	}
}
