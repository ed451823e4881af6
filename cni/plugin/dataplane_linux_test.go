package plugin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/dataplane"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// podAttacher is the part of a dataplane reconciler that pod attachments
// need, written against the real eBPF dataplane: every POD interface in the
// committed tree is attached to its VRF and its /32 routed to it. Calls run
// in the test's host namespace, where the host veth ends live.
type podAttacher struct {
	host ns.NetNS
	dp   *dataplane.Dataplane
}

func (a *podAttacher) ID() string                             { return "test-pod-attacher" }
func (a *podAttacher) Start(context.Context, *nos.Core) error { return nil }
func (a *podAttacher) Validate(*gen.Device) error             { return nil }
func (a *podAttacher) Stop(context.Context) error             { return nil }

func (a *podAttacher) Apply(_ context.Context, old, intended *gen.Device) error {
	return a.host.Do(func(ns.NetNS) error {
		var errs []error
		for name, intf := range nos.Interfaces(old) {
			cfg := intf.GetConfig()
			if cfg.GetType() != gen.IsthmusTypes_InterfaceType_POD || nos.Interfaces(intended)[name] != nil {
				continue
			}
			addr, err := netip.ParsePrefix(cfg.GetIpv4Address())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, a.dp.DeleteRoutes([]dataplane.RouteKey{{VRF: cfg.GetNetworkInstance(), Prefix: addr}}))
			if l, err := netlink.LinkByName(name); err == nil {
				errs = append(errs, a.dp.DetachInterface(l.Attrs().Index))
			}
		}
		for name, intf := range nos.Interfaces(intended) {
			cfg := intf.GetConfig()
			if cfg.GetType() != gen.IsthmusTypes_InterfaceType_POD || nos.Interfaces(old)[name] != nil {
				continue
			}
			l, err := netlink.LinkByName(name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			peer, err := net.ParseMAC(cfg.GetPod().GetPeerMacAddress())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			addr, err := netip.ParsePrefix(cfg.GetIpv4Address())
			if err != nil {
				errs = append(errs, err)
				continue
			}
			vrf := cfg.GetNetworkInstance()
			errs = append(errs,
				a.dp.AttachInterface(dataplane.Interface{Index: l.Attrs().Index, VRF: vrf, PeerMAC: peer}),
				a.dp.SetRoutes([]dataplane.Route{{RouteKey: dataplane.RouteKey{VRF: vrf, Prefix: addr}, Interface: l.Attrs().Index}}))
		}
		return errors.Join(errs...)
	})
}

// newDataplaneEnv is newEnv with the real eBPF dataplane attached to pods
// through the daemon's commits. The host namespace does not forward.
func newDataplaneEnv(t *testing.T) *env {
	t.Helper()
	requireRoot(t)
	host := newNS(t)
	pins := t.TempDir()
	t.Cleanup(func() { unix.Unmount(pins, unix.MNT_DETACH) })
	var dp *dataplane.Dataplane
	err := host.Do(func(ns.NetNS) error {
		var err error
		dp, err = dataplane.Open(dataplane.Config{BPFFS: pins, Logger: slog.New(slog.DiscardHandler)})
		return err
	})
	if err != nil {
		t.Fatalf("open dataplane: %v", err)
	}
	t.Cleanup(func() {
		if err := host.Do(func(ns.NetNS) error { return dp.Destroy() }); err != nil {
			t.Errorf("destroy dataplane: %v", err)
		}
	})
	d := testdaemon.Start(t, daemon.Config{}, &podAttacher{host: host, dp: dp})
	return &env{t: t, d: d, host: host, p: New(slog.New(slog.DiscardHandler), io.Discard), socket: d.Socket}
}

func TestPingThroughDataplane(t *testing.T) {
	e := newDataplaneEnv(t)
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	e.d.AddVRF("blue", "65000:2", "10.1.0.0/24")
	podA, podB, podC := newNS(t), newNS(t), newNS(t)
	resA, err := e.add("red", "dp-a", podA, "")
	if err != nil {
		t.Fatal(err)
	}
	resB, err := e.add("red", "dp-b", podB, "")
	if err != nil {
		t.Fatal(err)
	}
	// Pod C is in another VRF with the same address space: 10.1.0.1 again.
	resC, err := e.add("blue", "dp-c", podC, "")
	if err != nil {
		t.Fatal(err)
	}
	if resultAddr(t, resC) != resultAddr(t, resA) {
		t.Fatalf("blue's first pod got %s, want the same address as red's first, %s", resultAddr(t, resC), resultAddr(t, resA))
	}
	if err := ping(podA, resultAddr(t, resA), resultAddr(t, resB), 5*time.Second); err != nil {
		t.Fatalf("ping a → b through the dataplane: %v", err)
	}
	if err := ping(podB, resultAddr(t, resB), resultAddr(t, resA), 5*time.Second); err != nil {
		t.Fatalf("ping b → a through the dataplane: %v", err)
	}
	// After DEL, b is unreachable: its route is gone with its attachment.
	if err := e.del("red", "dp-b", podB.Path()); err != nil {
		t.Fatal(err)
	}
	if err := ping(podA, resultAddr(t, resA), resultAddr(t, resB), 500*time.Millisecond); err == nil {
		t.Fatal("ping to a deleted pod succeeded")
	}
}
