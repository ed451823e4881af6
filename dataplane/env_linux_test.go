package dataplane

import (
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/internal/testenv"
)

// quiet is the logger of dataplanes under test.
var quiet = slog.New(slog.DiscardHandler)

// requireRoot skips a privileged test when not root, except in CI.
func requireRoot(t testing.TB) { t.Helper(); testenv.Privileged(t) }

// isolate moves the calling test goroutine into a fresh network namespace.
// The OS thread stays locked and is discarded when the test ends, so no
// other goroutine ever runs in the namespace.
func isolate(t testing.TB) {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare netns: %v", err)
	}
	// IPv4 only: no IPv6 neighbor discovery from the test's veths reaches
	// the programs and bumps their counters behind the test's back.
	for _, c := range []string{"all", "default"} {
		err := os.WriteFile("/proc/sys/net/ipv6/conf/"+c+"/disable_ipv6", []byte("1"), 0o644)
		if err != nil && !errors.Is(err, fs.ErrNotExist) { // no IPv6 in this kernel at all
			t.Fatalf("disable ipv6: %v", err)
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatalf("find lo: %v", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up: %v", err)
	}
}

// openTest opens a dataplane pinned in a private bpffs under a temp dir.
func openTest(t testing.TB) *Dataplane { return openTestWith(t, Config{}) }

// openTestWith is openTest with a configuration (its BPFFS is replaced).
func openTestWith(t testing.TB, cfg Config) *Dataplane {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	cfg.BPFFS = dir
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	d, err := Open(cfg)
	if err != nil {
		t.Fatalf("open dataplane: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	return d
}

// addVeth creates a veth pair with fixed MACs in the current namespace.
func addVeth(t testing.TB, name, peer string, mac, peerMAC net.HardwareAddr) *netlink.Veth {
	t.Helper()
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name, HardwareAddr: mac},
		PeerName:         peer,
		PeerHardwareAddr: peerMAC,
	}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	for _, n := range []string{name, peer} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatalf("find %s: %v", n, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	v.Index = l.Attrs().Index
	return v
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
