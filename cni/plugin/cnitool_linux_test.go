package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/isthmus-net/isthmus/cni/daemon"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildBinaries builds isthmus-cni and cnitool (pinned as a tool in go.mod)
// once per test binary.
func buildBinaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "isthmus-cni-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		for _, pkg := range []string{"github.com/isthmus-net/isthmus/cmd/isthmus-cni", "github.com/containernetworking/cni/cnitool"} {
			out, err := exec.Command("go", "build", "-o", dir, pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// cnitool runs the real cnitool in the host namespace against conflists in
// confDir and the plugin in bin.
type cnitool struct {
	e       *env
	bin     string
	confDir string
}

func newCNITool(t *testing.T, e *env, networks ...string) *cnitool {
	bin := buildBinaries(t)
	c := &cnitool{e: e, bin: bin, confDir: t.TempDir()}
	for _, n := range networks {
		list := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"isthmus-cni","socket":%q}]}`, n, e.socket)
		if err := os.WriteFile(filepath.Join(c.confDir, n+".conflist"), []byte(list), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cnitool) run(cniArgs string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "cnitool"), args...)
	cmd.Env = append(os.Environ(), "NETCONFPATH="+c.confDir, "CNI_PATH="+c.bin, "CNI_IFNAME=eth0", "CNI_ARGS="+cniArgs)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var runErr error
	if err := c.e.host.Do(func(ns.NetNS) error { runErr = cmd.Run(); return nil }); err != nil {
		c.e.t.Fatalf("enter host netns: %v", err)
	}
	if runErr != nil {
		return stdout.String(), fmt.Errorf("cnitool %s: %v: %s", strings.Join(args, " "), runErr, stderr.String())
	}
	return stdout.String(), nil
}

func (c *cnitool) add(network string, pod ns.NetNS) *current.Result {
	c.e.t.Helper()
	out, err := c.run("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web", "add", network, pod.Path())
	if err != nil {
		c.e.t.Fatal(err)
	}
	r, err := current.NewResult([]byte(out))
	if err != nil {
		c.e.t.Fatalf("parse cnitool result %q: %v", out, err)
	}
	return r.(*current.Result)
}

func TestCNITool(t *testing.T) {
	e := newEnv(t, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.1.0.0/24")
	tool := newCNITool(t, e, "red", "blue")
	podA, podB := newNS(t), newNS(t)

	resA := tool.add("red", podA)
	resB := tool.add("red", podB)
	if resultAddr(t, resA) == resultAddr(t, resB) {
		t.Fatalf("both pods got %s", resultAddr(t, resA))
	}
	hostA := resA.Interfaces[0].Name
	if cfg := e.d.Interface(hostA).GetConfig(); cfg.GetPod().GetNamespace() != "shop" || cfg.GetIpv4Address() != resA.IPs[0].Address.String() {
		t.Fatalf("tree has %+v", cfg)
	}

	e.forwardInKernel(resA, resB)
	if err := ping(podA, resultAddr(t, resA), resultAddr(t, resB), 5*time.Second); err != nil {
		t.Fatalf("ping a → b: %v", err)
	}

	for _, cmd := range []string{"check", "status"} {
		if _, err := tool.run("", cmd, "red", podA.Path()); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := tool.run("", "del", "red", podA.Path()); err != nil {
			t.Fatal(err)
		}
	}
	if e.hostLink(hostA) || e.d.Interface(hostA) != nil {
		t.Fatal("cnitool del left the attachment")
	}
	if _, err := tool.run("", "check", "red", podA.Path()); err == nil {
		t.Fatal("check after del passed")
	}

	// cnitool's GC passes no valid attachments: pod B goes.
	if _, err := tool.run("", "gc", "red", podB.Path()); err != nil {
		t.Fatal(err)
	}
	if hostB := resB.Interfaces[0].Name; e.hostLink(hostB) || e.d.Interface(hostB) != nil {
		t.Fatal("cnitool gc left pod b")
	}

	_, err := tool.run("", "add", "blue", podA.Path())
	if err == nil || !strings.Contains(err.Error(), "unknown network") {
		t.Fatalf("add to a network with no vrf: %v", err)
	}
	if _, err := tool.run("", "status", "blue", podA.Path()); err == nil {
		t.Fatal("status of a network with no vrf passed")
	}
}

func TestVersion(t *testing.T) {
	bin := buildBinaries(t)
	cmd := exec.Command(filepath.Join(bin, "isthmus-cni"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	cmd.Stdin = strings.NewReader(`{"cniVersion":"1.1.0"}`)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("parse %s: %v", out, err)
	}
	for _, want := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(v.SupportedVersions, want) {
			t.Fatalf("supported versions %v lack %s", v.SupportedVersions, want)
		}
	}
}
