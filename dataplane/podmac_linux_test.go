package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPodMACMatchesLink checks that a pod interface's mac-address is
// the address of its link: the host end's address commits, another is
// refused naming the leaf (through a commit and through the validation of
// the whole configuration), and a pod whose link is not there yet passes.
func TestPodMACMatchesLink(t *testing.T) {
	requireRoot(t)
	h := &coreHost{ns: newNS(t, "host")}
	h.pod = addPod(t, h.ns, "pmac", 1, netip.MustParseAddr("10.1.0.2"), podMTU)
	h.startFresh(t)
	const hostMAC = "0a:00:00:00:01:01" // addPod's host end
	pod := func(d *gen.Device, name, addr, mac string) {
		c := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
		c.Name, c.Type, c.NetworkInstance = ygot.String(name), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		c.Ipv4Address, c.MacAddress = ygot.String(addr+"/32"), ygot.String(mac)
		c.GetOrCreatePod().PeerMacAddress = ygot.String(h.pod.mac.String())
	}
	h.commit(t, func(d *gen.Device) error {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red")
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String("red"), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String("65000:1")
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool("10.1.0.0/24").GetOrCreateConfig().Prefix = ygot.String("10.1.0.0/24")
		pod(d, "pmac", "10.1.0.2", strings.ToUpper(hostMAC)) // the same address, written otherwise
		pod(d, "pnone", "10.1.0.3", "02:00:00:00:00:03")     // no link yet
		return nil
	})

	const path = "/interfaces/interface[name=pmac]/config/mac-address"
	refused := func(what string, err error) {
		t.Helper()
		var pe *nos.PathError
		if !errors.As(err, &pe) || !errors.Is(err, nos.ErrInvalid) || pe.Path != path || !strings.Contains(err.Error(), "differs from "+hostMAC) {
			t.Fatalf("%s: err = %v, want invalid at %s: differs from %s", what, err, path, hostMAC)
		}
	}
	rev := h.core.Revision()
	err := h.ns.do(func() error {
		_, err := h.core.Commit(context.Background(), "test", func(d *gen.Device) error {
			d.Interfaces.Interface["pmac"].Config.MacAddress = ygot.String("0a:00:00:00:01:99")
			return nil
		})
		return err
	})
	refused("commit", err)
	if h.core.Revision() != rev {
		t.Fatalf("a refused commit made revision %d", h.core.Revision())
	}
	d := h.core.Config()
	d.Interfaces.Interface["pmac"].Config.MacAddress = ygot.String("0a:00:00:00:01:99")
	refused("validate the whole configuration", h.rec.Validate(d))
}
