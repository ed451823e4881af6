package bgp

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// Privileged tests build a network namespace with a veth to the test's
// namespace and run a real FRR bgpd in it. They need root and FRR; in CI
// (CI=true, root) they always run.
func needRoot(t *testing.T) { t.Helper(); testenv.Privileged(t, "/usr/lib/frr/bgpd") }

var linkSeq atomic.Uint32

// netLink is a veth between the test's namespace (host side, address
// .1/30) and a fresh namespace (peer side, .2/30).
type netLink struct {
	ns         string
	hostIf     string
	hostAddr   string
	peerAddr   string
	peerPrefix string
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLink creates the namespace and veth, removed at cleanup.
func newLink(t testing.TB) *netLink {
	t.Helper()
	n := linkSeq.Add(1)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, n)
	third := (os.Getpid()/7 + int(n)*3) % 250
	l := &netLink{
		ns:       "isbgp-" + id,
		hostIf:   "ib" + strconv.Itoa(os.Getpid()%100000) + "h" + strconv.Itoa(int(n)),
		hostAddr: fmt.Sprintf("10.213.%d.1", third),
		peerAddr: fmt.Sprintf("10.213.%d.2", third),
	}
	peerIf := strings.Replace(l.hostIf, "h", "p", 1)
	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", l.hostIf).Run()
		exec.Command("ip", "netns", "del", l.ns).Run()
	})
	run(t, "ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", peerIf)
	run(t, "ip", "link", "set", peerIf, "netns", l.ns)
	run(t, "ip", "addr", "add", l.hostAddr+"/30", "dev", l.hostIf)
	run(t, "ip", "link", "set", l.hostIf, "up")
	run(t, "ip", "netns", "exec", l.ns, "ip", "addr", "add", l.peerAddr+"/30", "dev", peerIf)
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", peerIf, "up")
	run(t, "ip", "netns", "exec", l.ns, "ip", "link", "set", "lo", "up")
	return l
}

// frr is one bgpd started by a test in a link's namespace.
type frr struct {
	t    testing.TB
	link *netLink
	dir  string
	cmd  *exec.Cmd
}

// startFRR writes conf and starts bgpd (no zebra, no kernel routes) in the
// link's namespace. It is killed at cleanup.
func startFRR(t testing.TB, l *netLink, conf string) *frr {
	t.Helper()
	dir, err := os.MkdirTemp("", "isbgp-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	f := &frr{t: t, link: l, dir: dir}
	f.setConf(conf)
	f.start()
	t.Cleanup(f.stop)
	return f
}

// setConf replaces the configuration the next start reads.
func (f *frr) setConf(conf string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "bgpd.conf"), []byte(conf), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *frr) start() {
	f.t.Helper()
	f.cmd = exec.Command("ip", "netns", "exec", f.link.ns, "/usr/lib/frr/bgpd", "-Z", "-S", "-u", "root", "-g", "root",
		"-f", filepath.Join(f.dir, "bgpd.conf"), "-i", filepath.Join(f.dir, "bgpd.pid"),
		"--vty_socket", f.dir, "--log", "file:"+filepath.Join(f.dir, "bgpd.log"))
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := f.cmd.Start(); err != nil {
		f.t.Fatalf("start bgpd: %v", err)
	}
	eventually(f.t, 10*time.Second, "bgpd vty", func() bool {
		_, err := os.Stat(filepath.Join(f.dir, "bgpd.vty"))
		return err == nil
	})
}

// stop kills the bgpd this test started (its process group).
func (f *frr) stop() {
	if f.cmd == nil || f.cmd.Process == nil {
		return
	}
	syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
	f.cmd.Wait()
	f.cmd = nil
	os.Remove(filepath.Join(f.dir, "bgpd.vty"))
}

// log returns bgpd's log, for failure messages.
func (f *frr) log() string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "bgpd.log"))
	return string(b)
}

// vtysh runs a show command against this bgpd.
func (f *frr) vtysh(cmd ...string) string {
	f.t.Helper()
	args := []string{"--vty_socket", f.dir, "-d", "bgpd"}
	for _, c := range cmd {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		f.t.Fatalf("vtysh %v: %v: %s", cmd, err, out)
	}
	return string(out)
}

// frrPath is one path of a VPNv4 route as FRR shows it.
type frrPath struct {
	Valid             bool `json:"valid"`
	RemoteLabel       int  `json:"remoteLabel"`
	Stale             bool `json:"stale"`
	ExtendedCommunity struct {
		String string `json:"string"`
	} `json:"extendedCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

// vpnRoute returns FRR's paths for RD:prefix (nil when it has none).
func (f *frr) vpnRoute(rd, prefix string) []frrPath {
	out := f.vtysh(fmt.Sprintf("show bgp ipv4 vpn rd %s %s json", rd, prefix))
	var m map[string]struct {
		Paths []frrPath `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil
	}
	return m[rd].Paths
}

// vpnCount returns how many VPNv4 prefixes FRR holds from a neighbor.
func (f *frr) vpnCount(neighbor string) int {
	out := f.vtysh("show bgp ipv4 vpn summary json")
	var s struct {
		Peers map[string]struct {
			PfxRcd int    `json:"pfxRcd"`
			State  string `json:"state"`
		} `json:"peers"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return -1
	}
	return s.Peers[neighbor].PfxRcd
}

func isRoot() bool { return os.Geteuid() == 0 }
