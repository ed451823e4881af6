package dataplane

import (
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// gatewayHost makes a host namespace with underlay "ul" (192.0.2.1/24)
// to a gateway namespace (192.0.2.254, the host's default route), with
// IPv4 forwarding on, as host access and SNAT need.
func gatewayHost(t *testing.T) (*coreHost, *testNS) {
	t.Helper()
	h := &coreHost{ns: newNS(t, "host")}
	gw := newNS(t, "gw")
	vethBetween(t, h.ns, "ul", mustMAC("02:00:00:00:00:01"), gw, "ul", mustMAC("02:00:00:00:00:fe"))
	h.ns.ip(t, "addr", "add", "192.0.2.1/24", "dev", "ul")
	h.ns.ip(t, "route", "add", "default", "via", "192.0.2.254")
	if out, err := h.ns.cmd("sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("enable forwarding: %v: %s", err, out)
	}
	gw.ip(t, "addr", "add", "192.0.2.254/24", "dev", "ul")
	return h, gw
}

// gatewayUnderlay configures gatewayHost's underlay and tunnel source.
func gatewayUnderlay(d *gen.Device) {
	ul := d.GetOrCreateInterfaces().GetOrCreateInterface("ul").GetOrCreateConfig()
	ul.Name, ul.Type = ygot.String("ul"), gen.IsthmusTypes_InterfaceType_UNDERLAY
	tc := d.GetOrCreateTunnel().GetOrCreateConfig()
	tc.SourceAddress, tc.UnderlayInterface = ygot.String("192.0.2.1"), ygot.String("ul")
}

// podInterface configures pod interface name of vrf with address addr
// (a /32) and the pod's MAC.
func podInterface(d *gen.Device, name, vrf, addr string, pod *testPod) {
	pc := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
	pc.Name, pc.Type, pc.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String(vrf)
	pc.Ipv4Address, pc.Mtu = ygot.String(addr), ygot.Uint16(podMTU)
	pc.GetOrCreatePod().PeerMacAddress = ygot.String(pod.mac.String())
}
