package plugin

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/gen"
)

func cniCode(t *testing.T, err error) uint {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("err = %v (%T), want a CNI error", err, err)
	}
	return te.Code
}

func resultAddr(t *testing.T, r *current.Result) netip.Addr {
	t.Helper()
	if len(r.IPs) != 1 {
		t.Fatalf("result has %d IPs", len(r.IPs))
	}
	a, _ := netip.AddrFromSlice(r.IPs[0].Address.IP)
	return a.Unmap()
}

func TestAddPingCheckDel(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	podA, podB := newNS(t), newNS(t)

	resA, err := e.add("red", "pod-a", podA, "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-a")
	if err != nil {
		t.Fatalf("add a: %v", err)
	}
	resB, err := e.add("red", "pod-b", podB, "")
	if err != nil {
		t.Fatalf("add b: %v", err)
	}

	// The result describes both ends, the /32 and the default route.
	hostName := HostIfName("pod-a", "eth0")
	if resA.CNIVersion != "1.1.0" || len(resA.Interfaces) != 2 || resA.Interfaces[0].Name != hostName ||
		resA.Interfaces[1].Name != "eth0" || resA.Interfaces[1].Sandbox != podA.Path() || resA.Interfaces[1].Mtu != 1450 {
		t.Fatalf("result interfaces = %v", resA.Interfaces)
	}
	if ip := resA.IPs[0]; ip.Address.String() != "10.1.0.1/32" || ip.Gateway.String() != "169.254.1.1" || *ip.Interface != 1 {
		t.Fatalf("result ip = %v", ip)
	}
	if len(resA.Routes) != 1 || resA.Routes[0].Dst.String() != "0.0.0.0/0" || resA.Routes[0].GW.String() != "169.254.1.1" {
		t.Fatalf("result routes = %v", resA.Routes)
	}

	// The pod namespace holds exactly that.
	err = podA.Do(func(ns.NetNS) error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if link.Attrs().MTU != 1450 || link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("eth0 mtu %d flags %v", link.Attrs().MTU, link.Attrs().Flags)
		}
		neighs, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(neighs) != 1 || neighs[0].State != netlink.NUD_PERMANENT || neighs[0].HardwareAddr.String() != resA.Interfaces[0].Mac {
			t.Errorf("neighbors = %+v, want the gateway at %s, permanent", neighs, resA.Interfaces[0].Mac)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The host end takes no IPv6: pods cannot reach the host over link-local.
	_ = e.host.Do(func(ns.NetNS) error {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + hostName + "/disable_ipv6")
		if err == nil && strings.TrimSpace(string(b)) != "1" {
			t.Errorf("ipv6 on %s: disable_ipv6 = %s", hostName, b)
		}
		return nil
	})

	// The attachment is in the configuration tree.
	cfg := e.d.Interface(hostName).GetConfig()
	if cfg.GetType() != gen.IsthmusTypes_InterfaceType_POD || cfg.GetNetworkInstance() != "red" ||
		cfg.GetIpv4Address() != "10.1.0.1/32" || cfg.GetPod().GetName() != "web-a" || cfg.GetPod().GetNetns() != podA.Path() {
		t.Fatalf("tree has %+v", cfg)
	}

	e.forwardInKernel(resA, resB)
	if err := ping(podA, resultAddr(t, resA), resultAddr(t, resB), 5*time.Second); err != nil {
		t.Fatalf("ping a → b: %v", err)
	}
	if err := ping(podB, resultAddr(t, resB), resultAddr(t, resA), 5*time.Second); err != nil {
		t.Fatalf("ping b → a: %v", err)
	}

	if err := e.check("red", "pod-a", podA, resA); err != nil {
		t.Fatalf("check: %v", err)
	}
	// CHECK notices a missing default route.
	_ = podA.Do(func(ns.NetNS) error {
		return netlink.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: resA.IPs[0].Gateway})
	})
	if err := e.check("red", "pod-a", podA, resA); err == nil {
		t.Fatal("check passed without a default route")
	}
	// CHECK notices a prevResult that does not match.
	wrong := *resA
	wrong.IPs = []*current.IPConfig{{Address: net.IPNet{IP: net.ParseIP("10.1.0.99").To4(), Mask: net.CIDRMask(32, 32)}}}
	if err := e.check("red", "pod-b", podB, &wrong); err == nil {
		t.Fatal("check passed with a wrong prevResult")
	}
	// CHECK notices a changed MTU.
	setMTU := func(mtu int) {
		_ = podB.Do(func(ns.NetNS) error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkSetMTU(l, mtu)
		})
	}
	setMTU(1300)
	if err := e.check("red", "pod-b", podB, resB); err == nil {
		t.Fatal("check passed with a changed mtu")
	}
	setMTU(1450)
	if err := e.check("red", "pod-b", podB, resB); err != nil {
		t.Fatalf("check b: %v", err)
	}

	for i := range 2 {
		if err := e.del("red", "pod-a", podA.Path()); err != nil {
			t.Fatalf("del %d: %v", i, err)
		}
	}
	if e.hostLink(hostName) || e.d.Interface(hostName) != nil {
		t.Fatal("del left the veth or the tree entry")
	}
	if code := cniCode(t, e.check("red", "pod-a", podA, resA)); code != types.ErrUnknownContainer {
		t.Fatalf("check after del: code %d", code)
	}
	// DEL with no namespace at all is fine too.
	if err := e.del("red", "pod-b", ""); err != nil {
		t.Fatalf("del without netns: %v", err)
	}
	if err := e.del("red", "never-added", "/var/run/netns/gone"); err != nil {
		t.Fatalf("del of an unknown pod: %v", err)
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	ids := []string{"gc-1", "gc-2", "gc-3"}
	for _, id := range ids {
		if _, err := e.add("red", id, newNS(t), ""); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
	// A veth the plugin made but the daemon never recorded (a crash
	// between the two) is collected by its alias.
	stray := HostIfName("gc-stray", "eth0")
	_ = e.host.Do(func(ns.NetNS) error {
		la := netlink.NewLinkAttrs()
		la.Name = stray
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "straypeer"}); err != nil {
			t.Fatalf("add stray veth: %v", err)
		}
		l, _ := netlink.LinkByName(stray)
		return netlink.LinkSetAlias(l, hostAlias("red", apiID("gc-stray")))
	})

	if err := e.gc("red", "gc-2"); err != nil {
		t.Fatalf("gc: %v", err)
	}
	for id, want := range map[string]bool{"gc-1": false, "gc-2": true, "gc-3": false, "gc-stray": false} {
		name := HostIfName(id, "eth0")
		if got := e.hostLink(name); got != want {
			t.Errorf("%s veth present = %v, want %v", id, got, want)
		}
		if id != "gc-stray" && (e.d.Interface(name) != nil) != want {
			t.Errorf("%s in tree = %v, want %v", id, !want, want)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/30")
	pod := newNS(t)

	if _, err := e.add("blue", "x", pod, ""); cniCode(t, err) != CodeUnknownNetwork {
		t.Fatalf("unknown network: %v", err)
	}
	if e.hostLink(HostIfName("x", "eth0")) {
		t.Fatal("failed add left its veth behind")
	}
	for _, id := range []string{"p1", "p2"} {
		if _, err := e.add("red", id, newNS(t), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.add("red", "p3", pod, ""); cniCode(t, err) != CodePoolExhausted {
		t.Fatalf("pool exhausted: %v", err)
	}
	if e.hostLink(HostIfName("p3", "eth0")) {
		t.Fatal("failed add left its veth behind")
	}
	// The pod namespace is clean again: a later ADD can reuse eth0.
	if err := e.del("red", "p1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.add("red", "p3", pod, ""); err != nil {
		t.Fatalf("add after a failed add in the same netns: %v", err)
	}

	if _, err := e.run((*Plugin).Add, argsFor("x", pod, []byte(`{"cniVersion":"1.1.0","name":`))); cniCode(t, err) != types.ErrDecodingFailure {
		t.Fatalf("malformed config: %v", err)
	}
	if _, err := e.run((*Plugin).Add, argsFor("x", pod, []byte(`{"cniVersion":"1.1.0","type":"isthmus-cni"}`))); cniCode(t, err) != types.ErrInvalidNetworkConfig {
		t.Fatalf("config without a name: %v", err)
	}
	if _, err := e.run((*Plugin).Add, argsFor("x", pod, e.conf("red", map[string]any{"mtu": 10}))); cniCode(t, err) != types.ErrInvalidNetworkConfig {
		t.Fatalf("config with a bad mtu: %v", err)
	}

	if err := e.status("red"); err != nil {
		t.Fatalf("status: %v", err)
	}
	if code := cniCode(t, e.status("blue")); code != types.ErrPluginNotAvailable {
		t.Fatalf("status of an unknown network: code %d", code)
	}
	e.d.Stop()
	if _, err := e.add("red", "y", newNS(t), ""); cniCode(t, err) != types.ErrTryAgainLater {
		t.Fatalf("add with the daemon down: %v", err)
	}
	if code := cniCode(t, e.status("red")); code != types.ErrPluginNotAvailable {
		t.Fatalf("status with the daemon down: code %d", code)
	}
}

func TestMTUOverride(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	pod := newNS(t)
	out, err := e.run((*Plugin).Add, argsFor("mtu", pod, e.conf("red", map[string]any{"mtu": 1400})))
	if err != nil {
		t.Fatal(err)
	}
	r, err := current.NewResult(out)
	if err != nil {
		t.Fatal(err)
	}
	if mtu := r.(*current.Result).Interfaces[1].Mtu; mtu != 1400 {
		t.Fatalf("mtu = %d, want 1400", mtu)
	}
}

func TestOlderSpecVersions(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	for _, v := range []string{"0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			pod := newNS(t)
			id := "v" + strings.ReplaceAll(v, ".", "")
			out, err := e.run((*Plugin).Add, argsFor(id, pod, e.conf("red", map[string]any{"cniVersion": v})))
			if err != nil {
				t.Fatal(err)
			}
			var head struct {
				CNIVersion string `json:"cniVersion"`
			}
			if err := json.Unmarshal(out, &head); err != nil || head.CNIVersion != v {
				t.Fatalf("result %s: version %q, %v", out, head.CNIVersion, err)
			}
			var prev map[string]any
			if err := json.Unmarshal(out, &prev); err != nil {
				t.Fatal(err)
			}
			if _, err := e.run((*Plugin).Check, argsFor(id, pod, e.conf("red", map[string]any{"cniVersion": v, "prevResult": prev}))); err != nil {
				t.Fatalf("check: %v", err)
			}
			if _, err := e.run((*Plugin).Del, argsFor(id, pod, e.conf("red", map[string]any{"cniVersion": v}))); err != nil {
				t.Fatalf("del: %v", err)
			}
		})
	}
}
