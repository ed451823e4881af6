package plugin

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

var (
	daemonOnce sync.Once
	daemonBin  string
	daemonErr  error
)

// buildIsthmusd builds the real daemon once per test binary, next to the
// plugin and cnitool.
func buildIsthmusd(t *testing.T) string {
	t.Helper()
	dir := buildBinaries(t)
	daemonOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", dir, "github.com/isthmus-net/isthmus/cmd/isthmusd").CombinedOutput()
		if err != nil {
			daemonErr = fmt.Errorf("go build isthmusd: %v\n%s", err, out)
		}
		daemonBin = filepath.Join(dir, "isthmusd")
	})
	if daemonErr != nil {
		t.Fatal(daemonErr)
	}
	return daemonBin
}

// node is a real isthmusd running in a namespace that plays a host.
type node struct {
	t    *testing.T
	host ns.NetNS
	bin  string
	args []string
	cmd  *exec.Cmd
	logs *strings.Builder
	gnmi gpb.GNMIClient
	sock string
}

func startNode(t *testing.T) *node {
	t.Helper()
	requireRoot(t)
	bin := buildIsthmusd(t)
	host := newNS(t)
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "isthmusd-cni-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	n := &node{t: t, host: host, logs: &strings.Builder{}, sock: filepath.Join(sockDir, "cni.sock")}
	var addr string
	err = host.Do(func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr = l.Addr().String()
		return l.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	bpffs := filepath.Join(dir, "bpf")
	t.Cleanup(func() { syscall.Unmount(bpffs, syscall.MNT_DETACH) })
	n.args = []string{"--insecure", "--target", "node1", "--data-dir", filepath.Join(dir, "data"),
		"--gnmi-address", addr, "--bpffs", bpffs, "--cni-socket", n.sock, "--log-level", "warn"}
	n.bin = bin
	t.Cleanup(n.stop)

	// gNMI listens in the node's namespace: dial from there.
	dialer := func(ctx context.Context, a string) (net.Conn, error) {
		var c net.Conn
		var derr error
		if err := host.Do(func(ns.NetNS) error { c, derr = (&net.Dialer{}).DialContext(ctx, "tcp", a); return nil }); err != nil {
			return nil, err
		}
		return c, derr
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithContextDialer(dialer), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n.gnmi = gpb.NewGNMIClient(conn)
	n.start()
	return n
}

// start runs isthmusd in the node's namespace and waits until gNMI answers
// and the CNI socket is there.
func (n *node) start() {
	t := n.t
	t.Helper()
	n.cmd = exec.Command(n.bin, n.args...)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	var startErr error
	if err := n.host.Do(func(ns.NetNS) error { startErr = n.cmd.Start(); return nil }); err != nil || startErr != nil {
		t.Fatalf("start isthmusd: %v %v", err, startErr)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := n.gnmi.Capabilities(ctx, &gpb.CapabilityRequest{})
		cancel()
		_, serr := os.Stat(n.sock)
		if err == nil && serr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("isthmusd not ready: %v, %v\n%s", err, serr, n.logs)
		}
	}
}

// stop sends SIGTERM and expects a clean exit.
func (n *node) stop() {
	if n.cmd == nil || n.cmd.ProcessState != nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			n.t.Errorf("isthmusd exited with %v after SIGTERM\n%s", err, n.logs)
		}
	case <-time.After(20 * time.Second):
		n.cmd.Process.Kill()
		<-done
		n.t.Errorf("isthmusd did not stop within 20s\n%s", n.logs)
	}
}

func (n *node) set(path, js string) {
	n.t.Helper()
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		n.t.Fatal(err)
	}
	_, err = n.gnmi.Set(context.Background(), &gpb.SetRequest{Update: []*gpb.Update{{Path: p,
		Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}}})
	if err != nil {
		n.t.Fatalf("gNMI Set %s: %v\n%s", path, err, n.logs)
	}
}

// get returns the JSON at path, or the gRPC code when the Get fails.
func (n *node) get(path string) (string, codes.Code) {
	n.t.Helper()
	p, err := ygot.StringToStructuredPath(path)
	if err != nil {
		n.t.Fatal(err)
	}
	r, err := n.gnmi.Get(context.Background(), &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		return "", status.Code(err)
	}
	var b strings.Builder
	for _, no := range r.GetNotification() {
		for _, u := range no.GetUpdate() {
			b.Write(u.GetVal().GetJsonIetfVal())
		}
	}
	return b.String(), codes.OK
}

// TestIsthmusdEndToEnd: the real isthmusd (core, dataplane and BGP
// reconcilers, gNMI, CNI API) in a node namespace, a VRF made over gNMI,
// pods attached with cnitool, ping between them through eBPF, the pod in a
// gNMI Get, everything still there after a daemon restart, and gone from
// the tree after DEL and GC.
func TestIsthmusdEndToEnd(t *testing.T) {
	n := startNode(t)
	n.set("/network-instances/network-instance[name=red]", `{"config":{"name":"red","type":"L3VRF",
		"route-distinguisher":"65000:1","import-route-target":["65000:1"],"export-route-target":["65000:1"]},
		"address-pools":{"address-pool":[{"prefix":"10.1.0.0/24","config":{"prefix":"10.1.0.0/24"}}]}}`)
	e := &env{t: t, host: n.host, socket: n.sock}
	tool := newCNITool(t, e, "red")
	podA, podB := newNS(t), newNS(t)
	resA := tool.add("red", podA)
	resB := tool.add("red", podB)

	if err := ping(podA, resultAddr(t, resA), resultAddr(t, resB), 5*time.Second); err != nil {
		t.Fatalf("ping a → b: %v\n%s", err, n.logs)
	}
	hostA := resA.Interfaces[0].Name
	js, code := n.get("/interfaces/interface[name=" + hostA + "]/config")
	if code != codes.OK {
		t.Fatalf("gNMI Get of %s: %v", hostA, code)
	}
	for _, want := range []string{`"POD"`, `"red"`, `"` + resA.IPs[0].Address.String() + `"`, `"shop"`, resA.Interfaces[1].Mac} {
		if !strings.Contains(js, want) {
			t.Errorf("gNMI Get of pod a lacks %s: %s", want, js)
		}
	}
	if _, err := tool.run("", "check", "red", podA.Path()); err != nil {
		t.Fatal(err)
	}

	// A restart keeps every allocation: the pods still check and still
	// reach each other, and a new pod gets an address of its own.
	n.stop()
	n.start()
	for _, pod := range []ns.NetNS{podA, podB} {
		if _, err := tool.run("", "check", "red", pod.Path()); err != nil {
			t.Fatalf("check after restart: %v\n%s", err, n.logs)
		}
	}
	podC := newNS(t)
	resC := tool.add("red", podC)
	if c := resultAddr(t, resC); c == resultAddr(t, resA) || c == resultAddr(t, resB) {
		t.Fatalf("new pod after restart got %s, already in use", c)
	}
	if err := ping(podC, resultAddr(t, resC), resultAddr(t, resA), 5*time.Second); err != nil {
		t.Fatalf("ping c → a after restart: %v\n%s", err, n.logs)
	}
	if err := ping(podA, resultAddr(t, resA), resultAddr(t, resB), 5*time.Second); err != nil {
		t.Fatalf("ping a → b after restart: %v\n%s", err, n.logs)
	}

	for range 2 {
		if _, err := tool.run("", "del", "red", podA.Path()); err != nil {
			t.Fatal(err)
		}
	}
	if _, code := n.get("/interfaces/interface[name=" + hostA + "]/config"); code != codes.NotFound {
		t.Fatalf("gNMI Get after del: %v, want NotFound", code)
	}
	if _, err := tool.run("", "gc", "red", podB.Path()); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{resB.Interfaces[0].Name, resC.Interfaces[0].Name} {
		if _, code := n.get("/interfaces/interface[name=" + r + "]/config"); code != codes.NotFound {
			t.Fatalf("gNMI Get of %s after gc: %v, want NotFound", r, code)
		}
	}
}
