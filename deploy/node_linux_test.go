package deploy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/isthmus-net/isthmus/internal/testenv"
	"github.com/isthmus-net/isthmus/server"
	"github.com/isthmus-net/isthmus/testbed"
)

// TestChartNodeConfigRuns: isthmusd in role node, started with the config
// the chart writes (only the host paths moved into the test's directory),
// in a namespace whose underlay interface is eth0 with the node's address,
// commits its startup config: the dataplane takes the tunnel on eth0 (its
// state mirrors the config) and BGP runs with the node's address as router
// id, all read back over gNMI with the credentials from the environment.
func TestChartNodeConfigRuns(t *testing.T) {
	testenv.Privileged(t)
	ns := testbed.NewNS(t)
	x := 100 + os.Getpid()%100
	hostAddr, nodeAddr := fmt.Sprintf("10.215.%d.1", x), fmt.Sprintf("10.215.%d.2", x)
	hostIf := fmt.Sprintf("ind%dh", os.Getpid()%100000)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "add", hostIf, "type", "veth", "peer", "name", hostIf+"p")
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	ip("link", "set", hostIf+"p", "netns", ns.Name)
	ip("-n", ns.Name, "link", "set", hostIf+"p", "name", "eth0")
	ip("addr", "add", hostAddr+"/30", "dev", hostIf)
	ip("link", "set", hostIf, "up")
	ip("-n", ns.Name, "addr", "add", nodeAddr+"/30", "dev", "eth0")
	ip("-n", ns.Name, "link", "set", "eth0", "up")

	// Self-signed gNMI certificate: no TLS Secret mounted here.
	objs := render(t, "--set", "node.underlayInterface=eth0", "--set", "gnmi.tls.secretName=", "--set", "gnmi.tls.clientSecretName=", "--set", "gnmi.tls.skipVerify=true")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(find(t, objs, "ConfigMap", "isthmus-node").get("data", "isthmusd.yaml").(string)), &cfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { syscall.Unmount(filepath.Join(dir, "bpf"), syscall.MNT_DETACH) })
	gnmiAddr := nodeAddr + ":9339"
	cfg["data-dir"] = filepath.Join(dir, "data")
	cfg["dataplane"].(map[string]any)["bpffs"] = filepath.Join(dir, "bpf")
	cfg["cni"].(map[string]any)["socket"] = filepath.Join(dir, "cni.sock")
	cfg["gnmi"].(map[string]any)["address"] = gnmiAddr
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "isthmusd.yaml")
	os.WriteFile(cfgPath, b, 0o600)

	bin := filepath.Join(dir, "isthmusd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/isthmusd").CombinedOutput(); err != nil {
		t.Fatalf("build isthmusd: %v\n%s", err, out)
	}
	hash, err := server.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "--config", cfgPath)
	cmd.Env = append(os.Environ(), "NODE_NAME=node1", "NODE_IP="+nodeAddr, "ISTHMUS_GNMI_USERNAME=isthmus", "ISTHMUS_GNMI_PASSWORD_HASH="+hash)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("isthmusd:\n%s\nconfig:\n%s", logs.String(), b)
		}
	})

	conn, err := grpc.NewClient(gnmiAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := gpb.NewGNMIClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "username", "isthmus", "password", "s3cret")
	get := func(path string, typ gpb.GetRequest_DataType) (map[string]any, error) {
		p, err := ygot.StringToStructuredPath(path)
		if err != nil {
			return nil, err
		}
		r, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: typ, Encoding: gpb.Encoding_JSON_IETF})
		if err != nil {
			return nil, err
		}
		var v map[string]any
		err = json.Unmarshal(r.GetNotification()[0].GetUpdate()[0].GetVal().GetJsonIetfVal(), &v)
		return v, err
	}
	field := func(v map[string]any, key string) string {
		for k, x := range v {
			if k == key || strings.HasSuffix(k, ":"+key) {
				return fmt.Sprint(x)
			}
		}
		return ""
	}
	var tunnelState map[string]any
	waitUntil(t, "isthmusd", done, 30*time.Second, "the dataplane's tunnel state", func() bool {
		tunnelState, err = get("/tunnel/state", gpb.GetRequest_STATE)
		return err == nil && field(tunnelState, "source-address") == nodeAddr
	})
	if got := field(tunnelState, "underlay-interface"); got != "eth0" {
		t.Errorf("tunnel state underlay-interface %q, want eth0", got)
	}
	global, err := get("/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp/global/config", gpb.GetRequest_CONFIG)
	if err != nil || field(global, "router-id") != nodeAddr || field(global, "as") != "64512" {
		t.Errorf("bgp global %v (%v), want as 64512 router-id %s", global, err, nodeAddr)
	}
	sys, err := get("/system/state", gpb.GetRequest_STATE)
	if err != nil || field(sys, "user") != "startup-config" {
		t.Errorf("system state %v (%v), want the last commit by startup-config", sys, err)
	}
}
