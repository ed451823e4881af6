package kubetest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
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

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/internal/testenv"
)

// Credentials of the admin user every test node has.
const (
	GNMIUser     = "admin"
	GNMIPassword = "kubetest-secret"
	GNMIPort     = 9339
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	hashOnce  sync.Once
	hash      string
)

// isthmusd builds cmd/isthmusd once per test binary.
func isthmusd(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubetest-isthmusd-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "isthmusd")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/isthmusd")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build isthmusd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	hashOnce.Do(func() {
		cmd := exec.Command(builtBin, "hash-password")
		cmd.Stdin = strings.NewReader(GNMIPassword + "\n")
		out, err := cmd.Output()
		if err != nil {
			buildErr = fmt.Errorf("isthmusd hash-password: %w", err)
		}
		hash = strings.TrimSpace(string(out))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// RemoveBuilds deletes the isthmusd binary built for the tests; call it
// from TestMain after the tests ran.
func RemoveBuilds() {
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
}

// Node is one isthmusd in a network namespace of its own, reached from the
// test's namespace over a veth pair: Addr is its end, the Node's InternalIP.
type Node struct {
	Name string
	Addr netip.Addr
	// GNMI is Addr:9339.
	GNMI string

	netns string
	dir   string
	cfg   string
	bin   string
	proc  *process
	conn  *grpc.ClientConn
}

var nodeSeq struct {
	sync.Mutex
	n int
}

// StartNodes starts n isthmusd nodes named prefix-0 … prefix-(n-1). They
// need root (network namespaces, eBPF); everything is removed at cleanup.
func StartNodes(t testing.TB, prefix string, n int) []*Node {
	t.Helper()
	testenv.Privileged(t)
	bin := isthmusd(t)
	nodes := make([]*Node, n)
	errs := make(chan error, n)
	for i := range nodes {
		nodes[i] = newNode(t, bin, fmt.Sprintf("%s-%d", prefix, i))
	}
	for _, nd := range nodes {
		go func() { errs <- nd.start(t) }()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

func newNode(t testing.TB, bin, name string) *Node {
	t.Helper()
	nodeSeq.Lock()
	nodeSeq.n++
	seq := nodeSeq.n
	nodeSeq.Unlock()
	// 10.<pid-based>.<seq>.0/30: the host end is .1, the node's .2.
	b := 100 + os.Getpid()%100
	host := fmt.Sprintf("10.%d.%d.1", b, seq)
	addr := netip.MustParseAddr(fmt.Sprintf("10.%d.%d.2", b, seq))
	tag := fmt.Sprintf("%d%d", os.Getpid()%10000, seq)
	nd := &Node{Name: name, Addr: addr, GNMI: net.JoinHostPort(addr.String(), fmt.Sprint(GNMIPort)),
		netns: "kt" + tag, dir: t.TempDir(), bin: bin}
	hostIf, nodeIf := "kth"+tag, "ktn"+tag
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", nd.netns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nd.netns).Run() })
	run("link", "add", hostIf, "type", "veth", "peer", "name", nodeIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	run("link", "set", nodeIf, "netns", nd.netns)
	run("addr", "add", host+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", nd.netns, "addr", "add", addr.String()+"/30", "dev", nodeIf)
	run("-n", nd.netns, "link", "set", nodeIf, "up")
	run("-n", nd.netns, "link", "set", "lo", "up")
	nd.cfg = filepath.Join(nd.dir, "isthmusd.yaml")
	writeFile(t, nd.cfg, fmt.Sprintf(`data-dir: %s
target: %s
log-level: warn
gnmi:
  address: %q
  users:
    - {name: %s, role: admin, password-hash: %q}
dataplane:
  bpffs: %s
cni:
  socket: %s
`, filepath.Join(nd.dir, "data"), name, nd.GNMI, GNMIUser, hash, filepath.Join(nd.dir, "bpf"), filepath.Join(nd.dir, "cni.sock")))
	t.Cleanup(func() { syscall.Unmount(filepath.Join(nd.dir, "bpf"), syscall.MNT_DETACH) })
	conn, err := grpc.NewClient(nd.GNMI, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	nd.conn = conn
	return nd
}

// start runs isthmusd and waits until it answers gNMI.
func (nd *Node) start(t testing.TB) error {
	nd.proc = start(t, "isthmusd "+nd.Name, exec.Command("ip", "netns", "exec", nd.netns, nd.bin, "--config", nd.cfg))
	// Twenty nodes loading their eBPF programs at once on a busy
	// two-core machine take a while.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(nd.Context(), time.Second)
		_, err := nd.Client().Capabilities(ctx, &gpb.CapabilityRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-nd.proc.done:
			return fmt.Errorf("isthmusd %s exited:\n%s", nd.Name, tail(nd.proc.output(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("isthmusd %s not ready after 2m: %v\n%s", nd.Name, err, tail(nd.proc.output(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the node's isthmusd (SIGTERM).
func (nd *Node) Stop() { nd.proc.stop() }

// Restart starts the node's isthmusd again; wipe first removes its data
// dir, so it comes back with an empty configuration.
func (nd *Node) Restart(t testing.TB, wipe bool) {
	t.Helper()
	if wipe {
		if err := os.RemoveAll(filepath.Join(nd.dir, "data")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nd.start(t); err != nil {
		t.Fatal(err)
	}
}

// Client is a gNMI client of the node.
func (nd *Node) Client() gpb.GNMIClient { return gpb.NewGNMIClient(nd.conn) }

// Context carries the node's credentials.
func (nd *Node) Context() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "username", GNMIUser, "password", GNMIPassword)
}

// StartBGP plays the node's startup config: the default instance runs BGP
// with AS as and the node's address as router id and tunnel source.
func (nd *Node) StartBGP(t testing.TB, as uint32) {
	t.Helper()
	js := fmt.Sprintf(`{"name":"default","config":{"name":"default","type":"DEFAULT"},
"protocols":{"protocol":[{"identifier":"BGP","name":"bgp","config":{"identifier":"BGP","name":"bgp"},
"bgp":{"global":{"config":{"as":%d,"router-id":%q}}}}]}}`, as, nd.Addr)
	p, _ := ygot.StringToStructuredPath("/network-instances/network-instance[name=default]")
	tp, _ := ygot.StringToStructuredPath("/tunnel/config/source-address")
	_, err := nd.Client().Set(nd.Context(), &gpb.SetRequest{Update: []*gpb.Update{
		{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(js)}}},
		{Path: tp, Val: &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: nd.Addr.String()}}},
	}})
	if err != nil {
		t.Fatalf("start bgp on %s: %v", nd.Name, err)
	}
}

// NetworkInstances reads the node's configured network instances (nil when
// it has none or cannot be reached).
func (nd *Node) NetworkInstances() (map[string]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance, error) {
	ctx, cancel := context.WithTimeout(nd.Context(), 5*time.Second)
	defer cancel()
	p, _ := ygot.StringToStructuredPath("/network-instances")
	resp, err := nd.Client().Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") {
			return nil, nil
		}
		return nil, err
	}
	var nis gen.IsthmusNetworkInstance_NetworkInstances
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			if err := gen.Unmarshal(u.GetVal().GetJsonIetfVal(), &nis); err != nil {
				return nil, err
			}
		}
	}
	return nis.NetworkInstance, nil
}

// Revision is the node's current commit revision.
func (nd *Node) Revision() (uint64, error) {
	ctx, cancel := context.WithTimeout(nd.Context(), 5*time.Second)
	defer cancel()
	p, _ := ygot.StringToStructuredPath("/system/state/revision")
	resp, err := nd.Client().Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_STATE, Encoding: gpb.Encoding_JSON_IETF})
	if err != nil {
		return 0, err
	}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			var v uint64
			if _, err := fmt.Sscan(strings.Trim(string(u.GetVal().GetJsonIetfVal()), `"`), &v); err == nil {
				return v, nil
			}
			return u.GetVal().GetUintVal(), nil
		}
	}
	return 0, nil
}
