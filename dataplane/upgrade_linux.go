package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Upgrades across an ABI change.
//
// A forwarder of an older ABI leaves its maps pinned under the bpffs
// directory and its programs attached through pinned links. Open then
// upgrades in place, before anything is loaded: every pinned map whose
// layout this object still has (type, sizes, flags, and the BTF of its key
// and value) is kept with its entries; the others are created anew and
// their pins moved onto the new maps (one rename each, so the old programs,
// which hold the old maps, keep forwarding); the pinned ABI is written
// last. Open then loads the new programs against the pinned maps but
// leaves every pinned link on the old programs: the caller programs the
// replaced maps from its configuration as it does at start, then
// FinishUpgrade moves each link to the new programs atomically (the
// Reconciler does so after its first full apply). Until then the old
// programs forward with the old maps, pods attached meanwhile run the new
// ones. A process that stops before FinishUpgrade leaves the pins at the
// new ABI; the next Open moves the links at once, as on any restart.
//
// Maps whose entries name the keys or slots of other maps are replaced
// together (upgradeFamilies): a kept map never refers to entries a
// replaced one lost. Pinned maps of a newer ABI are refused: this binary
// does not know their layout.

// upgradeFamilies groups the maps whose entries refer to each other's keys
// or slots, and from which Open rebuilds its view (adopt, policy(),
// services()): when one is replaced, all are. A map in no family stands
// alone (counters, whose slots are reset when handed out again);
// TestUpgradeFamiliesCoverEveryMap makes every pinned map one or the
// other.
var upgradeFamilies = [][]string{
	{"ifaces", "iface_index", "iface_slots", "endpoints", "endpoint_index",
		"endpoint_macs", "endpoint_vrfs", "addr_hints", "mac_hints", "groups",
		"routes", "host_routes", "route_cache", "route_gen", "labels",
		"tunnel_config"},
	{"pol_attach", "pol_rules", "pol_src", "pol_dst", "pol_dport", "pol_sport",
		"pol_words", "pol_ifaces", "pol_vrfs"},
	// A flow's policy verdict is valid while its generation equals
	// pol_gen's: the generation goes on from where it was (the first
	// SetPolicy bumps it past every kept verdict), and if it cannot, the
	// verdicts go too.
	{"flows", "pol_gen"},
	{"services", "backends", "flow_hints"},
	{"nat_host", "nat_vrfs", "floating_in", "floating_out", "floating_vpn"},
}

// goOnlyPins are pinned by the loader itself, outside the object.
var goOnlyPins = map[string]bool{"vrf_ids": true}

// upgradeTmpPrefix names a new map's pin before it is moved into place.
const upgradeTmpPrefix = "upgrade-" // bpffs reserves names with a dot

// upgradePinned reads the ABI of the maps pinned under dir. No pinned
// state, or state of this ABI: nothing to do. A newer ABI: an error naming
// both. An older one: the pinned maps are upgraded (see above), the new
// ABI is written, and the upgrade is returned: the links are to stay on
// the older programs until FinishUpgrade.
func upgradePinned(dir string, spec *ebpf.CollectionSpec, log *slog.Logger) (*pendingUpgrade, error) {
	from, err := pinnedABI(dir)
	if err != nil || from == 0 || from == abiVersion {
		return nil, err
	}
	if from > abiVersion {
		return nil, fmt.Errorf("pinned maps under %q have abi %d, newer than this forwarder's abi %d: a downgrade across an abi change is not supported; run a release of abi %d, or remove that directory (this interrupts forwarding until this forwarder is attached)", dir, from, abiVersion, from)
	}
	log.Info("upgrading pinned forwarder state", "dir", dir, "from_abi", from, "to_abi", abiVersion)
	if err := resumeMoves(dir, spec, log); err != nil {
		return nil, fmt.Errorf("upgrade from abi %d: %w", from, err)
	}
	verdicts := pinnedVerdicts(dir, spec)
	replace := map[string]string{} // map → why
	for _, name := range sortedKeys(verdicts) {
		why := verdicts[name]
		if why == "" {
			continue
		}
		replace[name] = why
		for _, fam := range upgradeFamilies {
			if !contains(fam, name) {
				continue
			}
			for _, other := range fam {
				if _, pinned := verdicts[other]; pinned && replace[other] == "" && verdicts[other] == "" {
					replace[other] = "replaced with " + name + " (same family)"
				}
			}
		}
	}
	// Every replacement is created and pinned aside first, then the pins
	// are moved: an upgrade interrupted while moving leaves the rest
	// aside, and the next Open moves them (resumeMoves), so a family is
	// never left half replaced.
	for _, name := range sortedKeys(replace) {
		if err := pinAside(dir, name, spec.Maps[name]); err != nil {
			return nil, fmt.Errorf("upgrade from abi %d: %w", from, err)
		}
	}
	for _, name := range sortedKeys(verdicts) {
		if why, ok := replace[name]; ok {
			if err := moveAside(dir, name); err != nil {
				return nil, fmt.Errorf("upgrade from abi %d: %w", from, err)
			}
			log.Info("upgrade: replaced pinned map", "map", name, "reason", why)
			continue
		}
		log.Info("upgrade: kept pinned map", "map", name)
	}
	for name, ms := range spec.Maps {
		if _, pinned := verdicts[name]; !pinned && ms.Pinning == ebpf.PinByName {
			log.Info("upgrade: new map", "map", name)
		}
	}
	if err := removeOrphanPins(dir, spec, log); err != nil {
		return nil, err
	}
	if len(replace) > 0 {
		// Programs pinned for this object would name the replaced maps'
		// predecessors; they are loaded again (links keep the attached
		// ones alive).
		if err := os.RemoveAll(filepath.Join(dir, "progs-"+objectHash())); err != nil {
			return nil, fmt.Errorf("upgrade from abi %d: unpin programs of the replaced maps: %w", from, err)
		}
	}
	if err := writePinnedABI(dir); err != nil {
		return nil, err
	}
	up := &pendingUpgrade{from: from, replaced: map[string]bool{}}
	for name := range replace {
		up.replaced[name] = true
	}
	return up, nil
}

// pendingUpgrade is an upgrade whose links have not moved yet.
type pendingUpgrade struct {
	from          uint32
	replaced      map[string]bool // maps replaced
	configApplied bool            // the Reconciler has applied its configuration
	fibSettled    bool            // the FIB has had its time to be relearnt
}

// upgradeStep records what the Reconciler has done since Open (applied
// its configuration, waited out the FIB's grace period) and moves the
// links once the new maps hold what forwarding needs: the configuration,
// and, when the route maps were replaced, the routes learnt from the FIB,
// which BGP sends again within that grace period (until then the old
// programs forward with the routes they had).
func (d *Dataplane) upgradeStep(configApplied, fibSettled bool) error {
	d.mu.Lock()
	u := d.upgrade
	if u == nil {
		d.mu.Unlock()
		return nil
	}
	u.configApplied = u.configApplied || configApplied
	u.fibSettled = u.fibSettled || fibSettled
	ready := u.configApplied && (u.fibSettled || !u.replaced["routes"] && !u.replaced["host_routes"])
	d.mu.Unlock()
	if !ready {
		return nil
	}
	return d.FinishUpgrade()
}

// pinnedABI returns the ABI written in the pinned abi map, 0 when there is
// none.
func pinnedABI(dir string) (uint32, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "abi"), nil)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open pinned abi map under %q: %w", dir, err)
	}
	defer m.Close()
	var zero, v uint32
	if err := m.Lookup(&zero, &v); err != nil {
		return 0, fmt.Errorf("read pinned abi under %q: %w", dir, err)
	}
	return v, nil
}

func writePinnedABI(dir string) error {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "abi"), nil)
	if err != nil {
		return fmt.Errorf("open pinned abi map under %q: %w", dir, err)
	}
	defer m.Close()
	if err := m.Put(uint32(0), uint32(abiVersion)); err != nil {
		return fmt.Errorf("write pinned abi under %q: %w", dir, err)
	}
	return nil
}

// pinnedVerdicts returns, for every map of spec pinned under dir, why it
// cannot be kept ("" when it can).
func pinnedVerdicts(dir string, spec *ebpf.CollectionSpec) map[string]string {
	out := map[string]string{}
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			out[name] = fmt.Sprintf("cannot be opened: %v", err)
			continue
		}
		out[name] = keepable(ms, m)
		m.Close()
	}
	return out
}

// keepable says why m cannot serve as ms ("" when it can): the library's
// checks (type, key and value sizes, entries, flags), then the layout of
// key and value as their BTF describes them, so that a struct whose fields
// moved within the same size is not kept.
func keepable(ms *ebpf.MapSpec, m *ebpf.Map) string {
	if err := ms.Compatible(m); err != nil {
		return err.Error()
	}
	if ms.Key == nil && ms.Value == nil {
		return ""
	}
	key, value, err := pinnedKV(m)
	if err != nil {
		return fmt.Sprintf("layout unknown: %v", err)
	}
	if ms.Key != nil && layout(key) != layout(ms.Key) {
		return fmt.Sprintf("key layout %s changed to %s", layout(key), layout(ms.Key))
	}
	if ms.Value != nil && layout(value) != layout(ms.Value) {
		return fmt.Sprintf("value layout %s changed to %s", layout(value), layout(ms.Value))
	}
	return ""
}

// mapInfo is the head of the kernel's struct bpf_map_info, up to the BTF
// type ids of key and value.
type mapInfo struct {
	Type, ID, KeySize, ValueSize, MaxEntries, Flags uint32
	Name                                            [16]byte
	Ifindex, VmlinuxValueTypeID                     uint32
	NetnsDev, NetnsIno                              uint64
	BTFID, KeyTypeID, ValueTypeID, VmlinuxID        uint32
	MapExtra                                        uint64
}

// pinnedKV returns the BTF types of a loaded map's key and value.
func pinnedKV(m *ebpf.Map) (key, value btf.Type, err error) {
	var info mapInfo
	attr := struct {
		fd, infoLen uint32
		info        uint64
	}{uint32(m.FD()), uint32(unsafe.Sizeof(info)), uint64(uintptr(unsafe.Pointer(&info)))}
	if _, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET_INFO_BY_FD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr)); e != 0 {
		return nil, nil, fmt.Errorf("read map info: %w", e)
	}
	if info.BTFID == 0 {
		return nil, nil, errors.New("map has no btf")
	}
	h, err := btf.NewHandleFromID(btf.ID(info.BTFID))
	if err != nil {
		return nil, nil, fmt.Errorf("open map btf: %w", err)
	}
	defer h.Close()
	s, err := h.Spec(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read map btf: %w", err)
	}
	if info.KeyTypeID != 0 {
		if key, err = s.TypeByID(btf.TypeID(info.KeyTypeID)); err != nil {
			return nil, nil, fmt.Errorf("read key type: %w", err)
		}
	}
	if info.ValueTypeID != 0 {
		if value, err = s.TypeByID(btf.TypeID(info.ValueTypeID)); err != nil {
			return nil, nil, fmt.Errorf("read value type: %w", err)
		}
	}
	return key, value, nil
}

// layout renders what a type looks like in memory: sizes, encodings,
// member names and offsets, element counts; names of types, typedefs and
// qualifiers do not count.
func layout(t btf.Type) string {
	var b strings.Builder
	writeLayout(&b, t, 0)
	return b.String()
}

func writeLayout(b *strings.Builder, t btf.Type, depth int) {
	if t == nil {
		b.WriteString("none")
		return
	}
	if depth > 16 {
		b.WriteString("…")
		return
	}
	switch t := btf.UnderlyingType(t).(type) {
	case *btf.Int:
		fmt.Fprintf(b, "int%d", t.Size*8)
		if t.Encoding&btf.Signed != 0 {
			b.WriteString("s")
		}
	case *btf.Float:
		fmt.Fprintf(b, "float%d", t.Size*8)
	case *btf.Enum:
		fmt.Fprintf(b, "enum%d", t.Size*8)
	case *btf.Pointer:
		b.WriteString("ptr")
	case *btf.Array:
		fmt.Fprintf(b, "[%d]", t.Nelems)
		writeLayout(b, t.Type, depth+1)
	case *btf.Struct:
		writeMembers(b, "struct", t.Size, t.Members, depth)
	case *btf.Union:
		writeMembers(b, "union", t.Size, t.Members, depth)
	default:
		fmt.Fprintf(b, "%T", t)
	}
}

func writeMembers(b *strings.Builder, kind string, size uint32, ms []btf.Member, depth int) {
	fmt.Fprintf(b, "%s%d{", kind, size)
	for i, m := range ms {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(b, "%s@%d", m.Name, m.Offset)
		if m.BitfieldSize != 0 {
			fmt.Fprintf(b, ":%d", m.BitfieldSize)
		}
		b.WriteString(" ")
		writeLayout(b, m.Type, depth+1)
	}
	b.WriteString("}")
}

// pinAside creates the map ms describes and pins it beside the pin name.
func pinAside(dir, name string, ms *ebpf.MapSpec) error {
	cp := ms.Copy()
	cp.Pinning = ebpf.PinNone
	m, err := ebpf.NewMap(cp)
	if err != nil {
		return fmt.Errorf("create map %s: %w", name, err)
	}
	defer m.Close()
	tmp := filepath.Join(dir, upgradeTmpPrefix+name)
	os.Remove(tmp)
	if err := m.Pin(tmp); err != nil {
		return fmt.Errorf("pin new map %s: %w", name, err)
	}
	return nil
}

// moveAside moves the pin name onto the map pinned beside it: one rename
// over the old pin, so the path never lacks a map, and the old programs
// keep the old map until their links move.
func moveAside(dir, name string) error {
	if err := unix.Rename(filepath.Join(dir, upgradeTmpPrefix+name), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("move pin of map %s: %w", name, err)
	}
	return nil
}

// resumeMoves finishes the moves of an interrupted upgrade: a map pinned
// aside that suits this object replaces its pin; one that does not (left
// by another binary) is removed.
func resumeMoves(dir string, spec *ebpf.CollectionSpec, log *slog.Logger) error {
	aside, err := filepath.Glob(filepath.Join(dir, upgradeTmpPrefix+"*"))
	if err != nil {
		return fmt.Errorf("find maps pinned aside: %w", err)
	}
	for _, p := range aside {
		name := strings.TrimPrefix(filepath.Base(p), upgradeTmpPrefix)
		ms, ok := spec.Maps[name]
		m, err := ebpf.LoadPinnedMap(p, nil)
		if err != nil || !ok || keepable(ms, m) != "" {
			if m != nil {
				m.Close()
			}
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove %q: %w", p, err)
			}
			continue
		}
		m.Close()
		if err := moveAside(dir, name); err != nil {
			return err
		}
		log.Info("upgrade: replaced pinned map", "map", name, "reason", "an interrupted upgrade had pinned its replacement")
	}
	return nil
}

// removeOrphanPins unpins the maps of the older object that this one no
// longer has. Programs still attached keep them until their links move.
func removeOrphanPins(dir string, spec *ebpf.CollectionSpec, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %q: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || goOnlyPins[name] || strings.HasSuffix(name, ".debug") || strings.HasPrefix(name, upgradeTmpPrefix) {
			continue
		}
		if _, ok := spec.Maps[name]; ok {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			continue // not a map
		}
		m.Close()
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("unpin map %s the new forwarder lacks: %w", name, err)
		}
		log.Info("upgrade: removed pinned map", "map", name, "reason", "not in this forwarder")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// FinishUpgrade moves every pinned link Open left on the programs of an
// older ABI to this forwarder's programs, each with one atomic link
// update. Call it once the replaced maps are programmed. Without an
// upgrade pending it does nothing.
func (d *Dataplane) FinishUpgrade() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.upgrade == nil {
		return nil
	}
	moved := 0
	for _, name := range sortedKeys(linkNames(d.links)) {
		l := d.links[name]
		prog := d.progForLink(name)
		if prog == nil {
			continue
		}
		pi, err := prog.Info()
		if err != nil {
			return fmt.Errorf("finish upgrade: read program %s: %w", prog, err)
		}
		want, _ := pi.ID()
		if li, err := l.Info(); err == nil && li.Program == want {
			continue // attached by this process
		}
		if err := l.Update(prog); err != nil {
			return fmt.Errorf("finish upgrade: move link %s to the new program: %w", name, err)
		}
		moved++
	}
	d.log.Info("upgrade: links moved to the new programs", "links", moved, "from_abi", d.upgrade.from)
	d.upgrade = nil
	return nil
}

func linkNames(links map[string]link.Link) map[string]string {
	out := make(map[string]string, len(links))
	for name := range links {
		out[name] = ""
	}
	return out
}
