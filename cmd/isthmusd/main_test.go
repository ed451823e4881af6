package main

import (
	"context"
	"crypto/tls"
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

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/isthmus-net/isthmus/server"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildDaemon compiles isthmusd once per test binary.
func buildDaemon(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "isthmusd-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "isthmusd")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build isthmusd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	logs *strings.Builder
}

func startDaemon(t *testing.T, bin, cfgPath string, args ...string) *proc {
	t.Helper()
	d := &proc{logs: &strings.Builder{}}
	d.cmd = exec.Command(bin, append([]string{"--config", cfgPath}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	return d
}

// stop sends SIGTERM and waits for a clean exit.
func (d *proc) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("isthmusd exited with %v after SIGTERM\n%s", err, d.logs)
		}
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("isthmusd did not stop within 20s of SIGTERM\n%s", d.logs)
	}
}

func dial(t *testing.T, addr string) (gpb.GNMIClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "username", "admin", "password", "s3cret")
	return gpb.NewGNMIClient(conn), ctx
}

func waitReady(t *testing.T, c gpb.GNMIClient, ctx context.Context, d *proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Capabilities(cctx, &gpb.CapabilityRequest{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("isthmusd not ready: %v\n%s", err, d.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRestartKeepsConfig commits over gNMI with TLS and a password, stops
// the daemon with SIGTERM, starts it again and reads the same config back.
func TestRestartKeepsConfig(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	// The dataplane mounts a private bpffs for its pins; take it away before
	// the directory is removed.
	t.Cleanup(func() { syscall.Unmount(filepath.Join(dir, "bpf"), syscall.MNT_DETACH) })
	hash, err := server.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cfg := fmt.Sprintf(`data-dir: %s
target: host1
gnmi:
  address: %q
  users:
    - {name: admin, role: admin, password-hash: %q}
dataplane:
  bpffs: %s
cni:
  socket: %s
`, filepath.Join(dir, "data"), addr, hash, filepath.Join(dir, "bpf"), filepath.Join(dir, "cni.sock"))
	cfgPath := filepath.Join(dir, "isthmusd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	d := startDaemon(t, bin, cfgPath)
	c, ctx := dial(t, addr)
	waitReady(t, c, ctx, d)
	p, _ := ygot.StringToStructuredPath("/network-instances/network-instance[name=red]/config")
	js := `{"name":"red","type":"L3VRF","route-distinguisher":"65000:7","import-route-target":["65000:7"],"export-route-target":["65000:7"]}`
	if _, err := c.Set(ctx, &gpb.SetRequest{Update: []*gpb.Update{{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}}}}); err != nil {
		t.Fatalf("set: %v\n%s", err, d.logs)
	}
	get := func() string {
		r, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		return string(r.GetNotification()[0].GetUpdate()[0].GetVal().GetJsonIetfVal())
	}
	before := get()
	if !strings.Contains(before, "65000:7") {
		t.Fatalf("get after set = %s", before)
	}
	d.stop(t)

	d2 := startDaemon(t, bin, cfgPath)
	c, ctx = dial(t, addr)
	waitReady(t, c, ctx, d2)
	if after := get(); after != before {
		t.Fatalf("after restart:\n%s\nwant\n%s", after, before)
	}
	d2.stop(t)
}

func TestHelpAndBadFlags(t *testing.T) {
	bin := buildDaemon(t)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hash-password") || !strings.Contains(string(out), "-gnmi-address") {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "--no-such-flag").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no-such-flag") {
		t.Fatalf("bad flag accepted: %s", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("gnmi:\n  adress: x\n"), 0o600)
	out, err = exec.Command(bin, "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "adress") {
		t.Fatalf("typo in config accepted: %s", out)
	}
	cmd := exec.Command(bin, "hash-password")
	cmd.Stdin = strings.NewReader("pw\n")
	out, err = cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "$2") {
		t.Fatalf("hash-password: %v %s", err, out)
	}
}
