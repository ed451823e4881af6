package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for kubectl with the same access.
	Kubeconfig string
	// Client is a clientset on Config.
	Client kubernetes.Interface
}

// process is a child that is killed and reaped at cleanup; its output goes
// to a buffer shown when the test fails.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex // guards out
	out  bytes.Buffer
	done chan struct{}
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out.Len() < 1<<20 {
		p.out.Write(b)
	}
	return len(b), nil
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t testing.TB, name string, cmd *exec.Cmd) *process {
	t.Helper()
	p, err := startProcess(name, cmd)
	if err != nil {
		t.Fatal(err)
	}
	p.stopAtCleanup(t)
	return p
}

// startProcess starts cmd as a child that dies with the test binary.
func startProcess(name string, cmd *exec.Cmd) (*process, error) {
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p, p
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

// stopAtCleanup stops p when t ends and shows its output if t failed.
func (p *process) stopAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", p.name, tail(p.output(), 1500))
		}
	})
}

// stop sends SIGTERM, then SIGKILL after 10 s, and waits.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// StartCluster starts etcd and kube-apiserver on loopback and waits until
// the API server is ready. Everything stops at t's cleanup. After
// StartAhead, a test takes the cluster started ahead for it, if any, and
// starts the next one.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	etcdBin, apiBin := Binaries(t)
	b := ahead.take()
	if b == nil {
		b = boot(etcdBin, apiBin)
	}
	if _, bench := t.(*testing.B); !bench {
		ahead.start(etcdBin, apiBin)
	}
	t.Cleanup(func() { os.RemoveAll(b.dir) })
	for _, p := range b.procs {
		p.stopAtCleanup(t)
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.c
}

// booted is a cluster started by boot: its processes, its directory, and
// what went wrong, if anything (then c is nil).
type booted struct {
	c     *Cluster
	procs []*process
	dir   string
	err   error
}

// stop stops b's processes, the API server before etcd (stopped the other
// way, kube-apiserver takes its 10 s to give up on etcd), and removes the
// directory.
func (b *booted) stop() {
	for _, p := range slices.Backward(b.procs) {
		p.stop()
	}
	os.RemoveAll(b.dir)
}

// ahead is the cluster started ahead for this test binary's next
// StartCluster: starting etcd and kube-apiserver takes about 3 s of which
// the test before it, mostly waiting on the controller, leaves the CPU
// free. Each test still has a cluster of its own.
var ahead aheadCluster

type aheadCluster struct {
	mu      sync.Mutex
	enabled bool
	next    chan *booted // nil when none is on its way
}

// StartAhead makes each StartCluster of a test (not of a benchmark) start
// the next cluster in the background. A test binary that calls it calls
// StopAhead when its tests are done.
func StartAhead() {
	ahead.mu.Lock()
	defer ahead.mu.Unlock()
	ahead.enabled = true
}

// StopAhead stops the cluster started ahead and not taken, if any.
func StopAhead() {
	ahead.mu.Lock()
	defer ahead.mu.Unlock()
	ahead.enabled = false
	if ahead.next != nil {
		(<-ahead.next).stop()
		ahead.next = nil
	}
}

// take returns the cluster started ahead, waiting for it to be ready, or
// nil when none was started.
func (a *aheadCluster) take() *booted {
	a.mu.Lock()
	next := a.next
	a.next = nil
	a.mu.Unlock()
	if next == nil {
		return nil
	}
	return <-next
}

// start boots the next cluster in the background when enabled and none is
// on its way.
func (a *aheadCluster) start(etcdBin, apiBin string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.enabled || a.next != nil {
		return
	}
	next := make(chan *booted, 1)
	a.next = next
	go func() { next <- boot(etcdBin, apiBin) }()
}

// boot starts etcd and kube-apiserver in a directory of their own and
// waits until the API server is ready.
func boot(etcdBin, apiBin string) *booted {
	dir, err := os.MkdirTemp("", clusterDirPrefix())
	if err != nil {
		return &booted{err: err}
	}
	b := &booted{dir: dir}
	fail := func(err error) *booted {
		b.err = err
		return b
	}
	ports, err := freePorts(3)
	if err != nil {
		return fail(err)
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcd, err := startProcess("etcd", exec.Command(etcdBin,
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn"))
	if err != nil {
		return fail(err)
	}
	b.procs = append(b.procs, etcd)

	token, err := randomHex()
	if err != nil {
		return fail(err)
	}
	key, err := rsaKeyPEM()
	if err != nil {
		return fail(err)
	}
	tokens := filepath.Join(dir, "tokens.csv")
	saKey := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(tokens, []byte(token+",isthmus-test,isthmus-test,system:masters\n"), 0o600); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(saKey, key, 0o600); err != nil {
		return fail(err)
	}
	api, err := startProcess("kube-apiserver", exec.Command(apiBin,
		"--etcd-servers", etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]),
		"--endpoint-reconciler-type=none",
		"--cert-dir", filepath.Join(dir, "certs"),
		"--token-auth-file", tokens,
		"--authorization-mode=RBAC",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		// As on real clusters (kubeadm sets it): CNI DaemonSets such as
		// isthmusd's run privileged.
		"--allow-privileged=true",
		"--profiling=false"))
	if err != nil {
		return fail(err)
	}
	b.procs = append(b.procs, api)

	host := "https://127.0.0.1:" + strconv.Itoa(ports[2])
	rc := &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400}
	if err := waitReady(host, token); err != nil {
		return fail(err)
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fail(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	err = os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: test, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`, host, token)), 0o600)
	if err != nil {
		return fail(err)
	}
	b.c = &Cluster{Config: rc, Kubeconfig: kubeconfig, Client: kc}
	return b
}

// clusterDirPrefix starts the name of every cluster directory of this test
// binary (its process id: test binaries of other packages run beside it).
func clusterDirPrefix() string { return fmt.Sprintf("kubetest-cluster-%d-", os.Getpid()) }

// freePorts returns n distinct free TCP ports on 127.0.0.1, holding each
// until all are found.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func waitReady(host, token string) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after 90s: %s", last)
}

func randomHex() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func rsaKeyPEM() ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
