package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/isthmus-net/isthmus/cni/plugin"
)

// Pod is a network namespace attached to a node's isthmusd through the
// real CNI plugin (run in-process, in the node's namespace, as a kubelet's
// runtime would run it), with its Kubernetes namespace and name in
// CNI_ARGS so that the node puts it in the VRF of that namespace.
type Pod struct {
	Namespace, Name string
	// Addr is the address isthmusd gave it.
	Addr netip.Addr
	// NetnsPath is its network namespace.
	NetnsPath string

	netns ns.NetNS
}

var podSeq struct {
	sync.Mutex
	n int
}

// AddPod attaches a pod of Kubernetes namespace namespace named name to the
// node with network network (the CNI configuration's name); everything is
// removed at cleanup.
func (nd *Node) AddPod(t testing.TB, network, namespace, name string) *Pod {
	t.Helper()
	podSeq.Lock()
	podSeq.n++
	nsName := fmt.Sprintf("%sp%d", nd.netns, podSeq.n)
	podSeq.Unlock()
	if out, err := exec.Command("ip", "netns", "add", nsName).CombinedOutput(); err != nil {
		t.Fatalf("add pod netns: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsName).Run() })
	if out, err := exec.Command("ip", "-n", nsName, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("pod lo up: %v: %s", err, out)
	}
	p := &Pod{Namespace: namespace, Name: name, NetnsPath: filepath.Join("/run/netns", nsName)}
	conf, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": network, "type": "isthmus-cni",
		"socket": filepath.Join(nd.dir, "cni.sock")})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	args := &skel.CmdArgs{ContainerID: nsName, Netns: p.NetnsPath, IfName: "eth0", Path: "/opt/cni/bin",
		Args: "K8S_POD_NAMESPACE=" + namespace + ";K8S_POD_NAME=" + name, StdinData: conf}
	var addErr error
	err = ns.WithNetNSPath(filepath.Join("/run/netns", nd.netns), func(ns.NetNS) error {
		addErr = plugin.New(slog.New(slog.DiscardHandler), &out).Add(args)
		return nil
	})
	if err == nil {
		err = addErr
	}
	if err != nil {
		t.Fatalf("cni add %s/%s on %s: %v", namespace, name, nd.Name, err)
	}
	res, err := current.NewResult(out.Bytes())
	if err != nil {
		t.Fatalf("parse cni result %s: %v", out.Bytes(), err)
	}
	r := res.(*current.Result)
	if len(r.IPs) == 0 {
		t.Fatalf("cni add %s/%s: no address in %s", namespace, name, out.Bytes())
	}
	p.Addr, _ = netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	if p.netns, err = ns.GetNS(p.NetnsPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.netns.Close() })
	return p
}

// Serve answers on TCP and UDP port port of the pod's address with the
// pod's "namespace/name" until the test ends: a TCP connection gets it
// and is closed, a UDP datagram gets it back.
func (p *Pod) Serve(t testing.TB, port int) {
	t.Helper()
	addr := net.JoinHostPort(p.Addr.String(), fmt.Sprint(port))
	var (
		ln net.Listener
		pc net.PacketConn
	)
	err := p.netns.Do(func(ns.NetNS) error {
		var err error
		if ln, err = net.Listen("tcp4", addr); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("serve %s/%s on %d: %v", p.Namespace, p.Name, port, err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	id := []byte(p.Namespace + "/" + p.Name)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write(id)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(id, from)
		}
	}()
}

// ErrNoAnswer says a probe got nothing back within its timeout.
var ErrNoAnswer = errors.New("no answer")

// Probe connects from the pod to dst:port over proto ("tcp" or "udp") and
// returns what the server answered (its "namespace/name"); a probe that
// gets nothing within timeout returns ErrNoAnswer.
func (p *Pod) Probe(ctx context.Context, proto string, dst netip.Addr, port int, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort(dst.String(), fmt.Sprint(port))
	var c net.Conn
	err := p.netns.Do(func(ns.NetNS) error {
		var err error
		if proto == "udp" {
			c, err = net.Dial("udp4", addr)
			return err
		}
		// The socket is made in the pod's namespace; connecting may take
		// until the timeout, which the dialer bounds.
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		return err
	})
	if err != nil {
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			return "", ErrNoAnswer
		}
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if proto == "udp" {
		// A write can only time out when the probe's time ran out before
		// it was sent: no answer, as for a dial that times out.
		if _, err := c.Write([]byte("probe")); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return "", ErrNoAnswer
			}
			return "", err
		}
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if n > 0 {
		return string(buf[:n]), nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return "", ErrNoAnswer
	}
	if err != nil && strings.Contains(err.Error(), "refused") {
		return "", ErrNoAnswer
	}
	return "", err
}
