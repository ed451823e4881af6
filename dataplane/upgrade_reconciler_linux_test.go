package dataplane

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/isthmus-net/isthmus/nos"
)

// TestReconcilerUpgradesOlderABI restarts a daemon (core and dataplane
// reconciler) over pins of an older ABI whose labels map, and so the whole
// forwarding family with the routes, has another layout, while a ping
// crosses the host and BGP takes its time to send the remote route again.
// The old programs must keep forwarding until the configuration is applied
// and the FIB's grace period is over, then the links move: nothing is lost.
func TestReconcilerUpgradesOlderABI(t *testing.T) {
	a, b, addrs := newCoreHosts(t, nil)
	labelA, err := a.core.Labels().VRF("red")
	must(t, err)
	labelB, err := b.core.Labels().Prefix("red", netip.PrefixFrom(b.pod.addr, 32))
	must(t, err)
	fibA := []nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.PrefixFrom(b.pod.addr, 32)},
		NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: labelB, Encap: nos.EncapMPLSoUDP}}}}}
	a.core.FIB().Update(slices.Clone(fibA))
	b.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.0/24")},
		NextHops: []nos.NextHop{{Endpoint: addrs[0], Label: labelA, Encap: nos.EncapMPLSoUDP}}}}})
	waitPing(t, a.pod, b.pod.addr, true)

	ping := a.pod.ns.cmd("ping", "-i", "0.01", "-c", "500", "-W", "1", b.pod.addr.String())
	var out strings.Builder
	ping.Stdout = &out
	must(t, ping.Start())
	time.Sleep(200 * time.Millisecond)
	a.cancel()
	// The pins of an older forwarder.
	spec, err := loadForwarder()
	must(t, err)
	ms := spec.Maps["labels"]
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ms.Type, KeySize: ms.KeySize, ValueSize: ms.ValueSize + 8, MaxEntries: ms.MaxEntries, Flags: ms.Flags})
	must(t, err)
	defer old.Close()
	must(t, unix.Unlink(filepath.Join(a.dir, "labels")))
	must(t, old.Pin(filepath.Join(a.dir, "labels")))
	must(t, pinned(t, a.dir, "abi").Put(uint32(0), uint32(abiVersion-1)))

	a.start(t) // applies the stored configuration
	d := a.rec.Dataplane()
	d.mu.Lock()
	waiting := d.upgrade != nil && linksOn(t, d, d.progs.PodIngress) == 0
	d.mu.Unlock()
	if !waiting {
		t.Error("links moved before the FIB was relearnt")
	}
	time.Sleep(300 * time.Millisecond) // BGP sends the route again
	a.core.FIB().Update(slices.Clone(fibA))
	if err := ping.Wait(); err != nil || !strings.Contains(out.String(), " 0% packet loss") {
		t.Fatalf("ping across an upgrading restart: %v\n%s", err, lastLines(out.String(), 3))
	}
	t.Logf("%s", lastLines(out.String(), 2))
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.upgrade != nil || linksOn(t, d, d.progs.PodIngress) != 1 {
		t.Fatal("the pod link did not move to the new program after the grace period")
	}
	if vs := pinned(t, a.dir, "labels").ValueSize(); vs != ms.ValueSize {
		t.Errorf("labels value size %d after the upgrade, want %d", vs, ms.ValueSize)
	}
}
