package dataplane

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// TestOpenRefusesNewerABI checks that maps pinned by a forwarder of a newer
// ABI (a downgrade) are refused before anything is loaded or changed, with
// an error naming both ABIs.
func TestOpenRefusesNewerABI(t *testing.T) {
	isolate(t)
	d := openTest(t)
	dir := d.Dir()
	d.Close()
	abi := pinned(t, dir, "abi")
	must(t, abi.Put(uint32(0), uint32(abiVersion+1)))
	d2, err := Open(Config{BPFFS: dir, Logger: quiet})
	if err == nil {
		d2.Close()
		t.Fatal("open with maps of a newer abi succeeded")
	}
	want := fmt.Sprintf("have abi %d, newer than this forwarder's abi %d", abiVersion+1, abiVersion)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name both abis (%q)", err, want)
	}
	var v uint32
	must(t, abi.Lookup(uint32(0), &v))
	if v != abiVersion+1 {
		t.Fatalf("refused open rewrote the pinned abi to %d", v)
	}
}

// TestOpenUpgradesOlderABI stands for a DaemonSet upgrade across an ABI
// change: host a's pins are turned into those of an older forwarder (older
// abi, pol_src and labels of another value layout, pol_words missing, a
// map this forwarder lacks, a flow entry) while its programs keep
// forwarding a ping to host b. Open must upgrade in place: the flow table
// and the service maps are kept, pol_src, labels and their families are
// replaced with the new layout, the old programs forward until the new
// maps are programmed (the agent takes its time), the links then move to
// the new programs, and the ping loses nothing.
func TestOpenUpgradesOlderABI(t *testing.T) {
	// MPLSoMPLS adds XDP links (underlay and pods) to move.
	for _, encap := range []Encap{EncapMPLSoUDP, EncapMPLSoMPLS} {
		t.Run(encap.String(), func(t *testing.T) { testUpgrade(t, encap) })
	}
}

func testUpgrade(t *testing.T, encap Encap) {
	o := newOverlay(t, encap)
	h := o.a
	h.d.Close()
	dir := h.cfg.Dir
	spec, err := loadForwarder()
	must(t, err)

	// The flow entry an older forwarder recorded.
	flows := pinned(t, dir, "flows")
	fk, fv := make([]byte, flows.KeySize()), make([]byte, flows.ValueSize())
	for i := range fk {
		fk[i] = byte(i + 1)
	}
	fv[0] = 0x5a
	must(t, flows.Put(fk, fv))
	ids := map[string]ebpf.MapID{}
	for _, name := range []string{"flows", "services", "iface_counters", "routes", "pol_attach"} {
		ids[name] = mapID(t, pinned(t, dir, name))
	}
	for _, name := range []string{"pol_src", "labels"} {
		ms := spec.Maps[name]
		old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ms.Type, KeySize: ms.KeySize, ValueSize: ms.ValueSize + 8, MaxEntries: ms.MaxEntries, Flags: ms.Flags})
		must(t, err)
		defer old.Close()
		must(t, unix.Unlink(filepath.Join(dir, name)))
		must(t, old.Pin(filepath.Join(dir, name)))
		ids[name] = mapID(t, old)
	}
	must(t, unix.Unlink(filepath.Join(dir, "pol_words")))
	gone, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	must(t, err)
	defer gone.Close()
	must(t, gone.Pin(filepath.Join(dir, "pol_bits_old")))
	must(t, pinned(t, dir, "abi").Put(uint32(0), uint32(abiVersion-1)))

	src, dst := h.pods["red"], o.b.pods["red"]
	var out strings.Builder
	ping := src.ns.cmd("ping", "-i", "0.01", "-c", "250", "-W", "1", dst.addr.String())
	ping.Stdout, ping.Stderr = &out, &out
	must(t, ping.Start())
	time.Sleep(500 * time.Millisecond)

	var logs bytes.Buffer
	err = h.ns.do(func() error {
		d, err := Open(Config{BPFFS: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			return err
		}
		h.d = d
		time.Sleep(300 * time.Millisecond) // the agent reads its configuration
		if err := h.cfg.apply(d); err != nil {
			return err
		}
		// Until FinishUpgrade the links stay on the old programs.
		if n := linksOn(t, d, d.progs.PodIngress); n != 0 {
			return fmt.Errorf("%d pod links moved to the new program before FinishUpgrade", n)
		}
		return d.FinishUpgrade()
	})
	if err != nil {
		t.Fatalf("upgrade over pins of abi %d: %v\n%s", abiVersion-1, err, logs.String())
	}
	if err := ping.Wait(); err != nil || !strings.Contains(out.String(), " 0% packet loss") {
		t.Fatalf("ping across the upgrade: %v\n%s", err, lastLines(out.String(), 3))
	}
	t.Logf("%s", lastLines(out.String(), 2))

	got := make([]byte, len(fv))
	if err := pinned(t, dir, "flows").Lookup(fk, got); err != nil || got[0] != 0x5a {
		t.Fatalf("flow entry lost across the upgrade: %v", err)
	}
	kept := map[string]bool{"flows": true, "services": true, "iface_counters": true, "routes": false, "labels": false, "pol_attach": false, "pol_src": false}
	for name, kept := range kept {
		id := mapID(t, pinned(t, dir, name))
		if (id == ids[name]) != kept {
			t.Errorf("map %s: kept %v, want kept %v", name, id == ids[name], kept)
		}
	}
	for _, name := range []string{"pol_src", "labels"} {
		if vs, want := pinned(t, dir, name).ValueSize(), spec.Maps[name].ValueSize; vs != want {
			t.Errorf("%s value size %d after the upgrade, want %d", name, vs, want)
		}
	}
	pinned(t, dir, "pol_words")
	if _, err := ebpf.LoadPinnedMap(filepath.Join(dir, "pol_bits_old"), nil); err == nil {
		t.Error("pin of a map the new forwarder lacks survived the upgrade")
	}
	var v uint32
	must(t, pinned(t, dir, "abi").Lookup(uint32(0), &v))
	if v != abiVersion {
		t.Errorf("pinned abi %d after the upgrade, want %d", v, abiVersion)
	}
	// The pod links now run a program of this forwarder that uses the
	// replacing pol_src, not the one it replaced.
	pi, err := h.d.progs.PodIngress.Info()
	must(t, err)
	used, _ := pi.MapIDs()
	if src := mapID(t, pinned(t, dir, "pol_src")); !slices.Contains(used, src) {
		t.Errorf("pod program uses maps %v, not the pinned pol_src %d", used, src)
	}
	if n := linksOn(t, h.d, h.d.progs.PodIngress); n != len(h.pods) {
		t.Errorf("%d pod links on the new program after FinishUpgrade, want %d", n, len(h.pods))
	}
	for _, line := range []string{"msg=\"upgrade: kept pinned map\" map=flows", "msg=\"upgrade: replaced pinned map\" map=pol_src", "msg=\"upgrade: replaced pinned map\" map=pol_attach", "msg=\"upgrade: replaced pinned map\" map=routes", "msg=\"upgrade: new map\" map=pol_words", "msg=\"upgrade: removed pinned map\" map=pol_bits_old", fmt.Sprintf("msg=\"upgrade: links moved to the new programs\" links=%d", len(h.d.links))} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %q:\n%s", line, logs.String())
		}
	}
}

// TestUpgradeComparesLayouts checks that a pinned map of the same sizes
// whose value is laid out differently (as BTF says) is not kept.
func TestUpgradeComparesLayouts(t *testing.T) {
	requireRoot(t)
	spec, err := loadForwarder()
	must(t, err)
	ms := spec.Maps["ifaces"]
	same, err := ebpf.NewMap(withoutPin(ms))
	must(t, err)
	defer same.Close()
	if why := keepable(ms, same); why != "" {
		t.Fatalf("map of the same spec not kept: %s", why)
	}
	moved := withoutPin(ms)
	u8 := &btf.Int{Name: "u8", Size: 1}
	moved.Value = &btf.Struct{Name: "iface", Size: ms.ValueSize, Members: []btf.Member{
		{Name: "raw", Type: &btf.Array{Index: &btf.Int{Name: "u32", Size: 4}, Type: u8, Nelems: ms.ValueSize}},
	}}
	other, err := ebpf.NewMap(moved)
	must(t, err)
	defer other.Close()
	if why := keepable(ms, other); !strings.Contains(why, "value layout") {
		t.Fatalf("map of another value layout and the same size: %q, want a value layout change", why)
	}
}

func withoutPin(ms *ebpf.MapSpec) *ebpf.MapSpec {
	cp := ms.Copy()
	cp.Pinning = ebpf.PinNone
	return cp
}

func pinned(t *testing.T, dir, name string) *ebpf.Map {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
	if err != nil {
		t.Fatalf("open pinned map %s: %v", name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	must(t, err)
	id, ok := info.ID()
	if !ok {
		t.Fatal("map has no id")
	}
	return id
}

// linksOn counts the pod tc links of d that run prog.
func linksOn(t *testing.T, d *Dataplane, prog *ebpf.Program) int {
	t.Helper()
	pi, err := prog.Info()
	must(t, err)
	want, _ := pi.ID()
	n := 0
	for name, l := range d.links {
		if !strings.HasPrefix(name, linkPod) || strings.HasPrefix(name, linkPodXDP) {
			continue
		}
		li, err := l.Info()
		must(t, err)
		if li.Program == want {
			n++
		}
	}
	return n
}

// TestUpgradeResumesInterruptedMove checks that an upgrade interrupted
// after pinning a replacement aside, before moving its pin, is finished by
// the next Open: the map pinned aside takes the pin (its family is never
// left half replaced), and nothing is left aside.
func TestUpgradeResumesInterruptedMove(t *testing.T) {
	isolate(t)
	d := openTest(t)
	dir := d.Dir()
	d.Close()
	spec, err := loadForwarder()
	must(t, err)
	must(t, pinned(t, dir, "abi").Put(uint32(0), uint32(abiVersion-1)))
	must(t, pinAside(dir, "pol_src", spec.Maps["pol_src"]))
	aside := pinned(t, dir, upgradeTmpPrefix+"pol_src")
	want := mapID(t, aside)
	d2, err := Open(Config{BPFFS: dir, Logger: quiet})
	if err != nil {
		t.Fatalf("open after an interrupted upgrade: %v", err)
	}
	defer d2.Close()
	if got := mapID(t, pinned(t, dir, "pol_src")); got != want {
		t.Fatalf("pol_src is map %d, want the one pinned aside (%d)", got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, upgradeTmpPrefix+"*")); len(left) != 0 {
		t.Fatalf("pins left aside: %v", left)
	}
}

// TestUpgradeFamiliesCoverEveryMap makes each pinned map of the object a
// decision: a member of an upgrade family (its entries name another map's
// keys or slots, or Open rebuilds its view from it) or standing alone
// (below), so that a map added later is not kept across an upgrade by
// default while the map its entries refer to is replaced. A family member
// the object no longer pins is reported too.
func TestUpgradeFamiliesCoverEveryMap(t *testing.T) {
	standalone := map[string]bool{
		"abi": true, // rewritten by the upgrade
		// Counters: a slot's counters are reset when the slot is handed out.
		"backend_counters": true, "endpoint_counters": true, "flow_counters": true,
		"iface_counters": true, "nat_counters": true, "pol_entry_counters": true,
		"pol_iface_denied": true, "pol_node_passed": true, "pol_tunnel_answers": true,
		"pol_vrf_denied": true, "service_counters": true, "vrf_drops": true,
	}
	spec, err := loadForwarder()
	must(t, err)
	inFamily := map[string]bool{}
	for _, fam := range upgradeFamilies {
		for _, name := range fam {
			inFamily[name] = true
			if ms, ok := spec.Maps[name]; !ok || ms.Pinning != ebpf.PinByName {
				t.Errorf("upgrade family member %s is not a pinned map of the object", name)
			}
		}
	}
	for name, ms := range spec.Maps {
		if ms.Pinning == ebpf.PinByName && !inFamily[name] && !standalone[name] {
			t.Errorf("pinned map %s is in no upgrade family and not known to stand alone: add it to upgradeFamilies (upgrade_linux.go) or to this test's list", name)
		}
	}
}
