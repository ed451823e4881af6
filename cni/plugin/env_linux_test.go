package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/internal/testenv"
)

// requireRoot skips a privileged test when not root, except in CI.
func requireRoot(t testing.TB) { t.Helper(); testenv.Privileged(t) }

// newNS creates a network namespace that is removed when the test ends.
func newNS(t testing.TB) ns.NetNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		n.Close()
		if err := testutils.UnmountNS(n); err != nil {
			t.Errorf("remove netns: %v", err)
		}
	})
	return n
}

// cniPath is the CNI_PATH the in-process commands get; the plugin runs no
// other plugin, so it is only checked.
const cniPath = "/opt/cni/bin"

// env is one host: a daemon, a namespace standing for the host's root
// namespace (where host veth ends go) and the plugin.
type env struct {
	t      testing.TB
	d      *testdaemon.Daemon
	host   ns.NetNS
	p      *Plugin
	socket string
}

func newEnv(t testing.TB, cfg daemon.Config) *env {
	t.Helper()
	requireRoot(t)
	d := testdaemon.Start(t, cfg)
	log := slog.New(slog.DiscardHandler)
	return &env{t: t, d: d, host: newNS(t), p: New(log, io.Discard), socket: d.Socket}
}

func (e *env) conf(network string, extra map[string]any) []byte {
	m := map[string]any{"cniVersion": "1.1.0", "name": network, "type": "isthmus-cni", "socket": e.socket}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// run runs one plugin command in the host namespace and returns stdout.
func (e *env) run(cmd func(*Plugin, *skel.CmdArgs) error, args *skel.CmdArgs) ([]byte, error) {
	var out bytes.Buffer
	p := New(e.p.log, &out)
	var cmdErr error
	if err := e.host.Do(func(ns.NetNS) error { cmdErr = cmd(p, args); return nil }); err != nil {
		e.t.Fatalf("enter host netns: %v", err)
	}
	return out.Bytes(), cmdErr
}

func (e *env) add(network, containerID string, pod ns.NetNS, cniArgs string) (*current.Result, error) {
	out, err := e.run((*Plugin).Add, &skel.CmdArgs{
		ContainerID: containerID, Netns: pod.Path(), IfName: "eth0", Path: cniPath, Args: cniArgs,
		StdinData: e.conf(network, nil),
	})
	if err != nil {
		return nil, err
	}
	res, err := current.NewResult(out)
	if err != nil {
		e.t.Fatalf("parse result %s: %v", out, err)
	}
	return res.(*current.Result), nil
}

func (e *env) del(network, containerID, netnsPath string) error {
	_, err := e.run((*Plugin).Del, &skel.CmdArgs{
		ContainerID: containerID, Netns: netnsPath, IfName: "eth0", Path: cniPath, StdinData: e.conf(network, nil),
	})
	return err
}

func (e *env) check(network, containerID string, pod ns.NetNS, prev *current.Result) error {
	var prevMap map[string]any
	b, _ := json.Marshal(prev)
	if err := json.Unmarshal(b, &prevMap); err != nil {
		e.t.Fatal(err)
	}
	_, err := e.run((*Plugin).Check, &skel.CmdArgs{
		ContainerID: containerID, Netns: pod.Path(), IfName: "eth0", Path: cniPath,
		StdinData: e.conf(network, map[string]any{"prevResult": prevMap}),
	})
	return err
}

func (e *env) gc(network string, valid ...string) error {
	var atts []types.GCAttachment
	for _, id := range valid {
		atts = append(atts, types.GCAttachment{ContainerID: id, IfName: "eth0"})
	}
	_, err := e.run((*Plugin).GC, &skel.CmdArgs{Path: cniPath, StdinData: e.conf(network, map[string]any{"cni.dev/valid-attachments": atts})})
	return err
}

func (e *env) status(network string) error {
	_, err := e.run((*Plugin).Status, &skel.CmdArgs{Path: cniPath, StdinData: e.conf(network, nil)})
	return err
}

// hostLink reports whether a link exists in the host namespace.
func (e *env) hostLink(name string) bool {
	var found bool
	_ = e.host.Do(func(ns.NetNS) error {
		_, err := netlink.LinkByName(name)
		found = err == nil
		return nil
	})
	return found
}

// forwardInKernel stands in for the eBPF dataplane in tests that only need
// two local pods to reach each other: the host namespace routes each pod's
// /32 to its veth and resolves it statically, as the dataplane would.
func (e *env) forwardInKernel(results ...*current.Result) {
	e.t.Helper()
	err := e.host.Do(func(ns.NetNS) error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return err
		}
		for _, r := range results {
			link, err := netlink.LinkByName(r.Interfaces[0].Name)
			if err != nil {
				return err
			}
			addr := r.IPs[0].Address
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: &addr, Scope: netlink.SCOPE_LINK}); err != nil {
				return fmt.Errorf("route %s: %w", addr.String(), err)
			}
			mac, err := net.ParseMAC(r.Interfaces[1].Mac)
			if err != nil {
				return err
			}
			if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4,
				State: netlink.NUD_PERMANENT, IP: addr.IP, HardwareAddr: mac}); err != nil {
				return fmt.Errorf("neighbor %s: %w", addr.IP, err)
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("kernel forwarding: %v", err)
	}
}

// ping sends ICMP echo requests from inside a namespace until one is
// answered or the deadline passes.
func ping(from ns.NetNS, src, dst netip.Addr, timeout time.Duration) error {
	return from.Do(func(ns.NetNS) error {
		c, err := icmp.ListenPacket("ip4:icmp", src.String())
		if err != nil {
			return fmt.Errorf("listen icmp: %w", err)
		}
		defer c.Close()
		deadline := time.Now().Add(timeout)
		for seq := 1; time.Now().Before(deadline); seq++ {
			msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x1517, Seq: seq, Data: []byte("isthmus")}}
			b, err := msg.Marshal(nil)
			if err != nil {
				return err
			}
			if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
				return fmt.Errorf("send echo: %w", err)
			}
			if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
				return err
			}
			buf := make([]byte, 1500)
			for {
				n, peer, err := c.ReadFrom(buf)
				if err != nil {
					break // timeout: send again
				}
				reply, err := icmp.ParseMessage(1, buf[:n])
				if err != nil || reply.Type != ipv4.ICMPTypeEchoReply || peer.String() != dst.String() {
					continue
				}
				if echo, ok := reply.Body.(*icmp.Echo); ok && echo.Seq == seq {
					return nil
				}
			}
		}
		return fmt.Errorf("no echo reply from %s to %s within %s", dst, src, timeout)
	})
}

func apiID(containerID string) api.AttachmentID {
	return api.AttachmentID{ContainerID: containerID, IfName: "eth0"}
}

func argsFor(containerID string, pod ns.NetNS, conf []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: containerID, Netns: pod.Path(), IfName: "eth0", Path: cniPath, StdinData: conf}
}
