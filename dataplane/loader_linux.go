package dataplane

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// abiVersion must match ISTHMUS_ABI in bpf/types.h.
const abiVersion = 11

// Dataplane is the loaded (or adopted) forwarder. It is safe for concurrent
// use. Close releases this process's handles and leaves forwarding running;
// Destroy tears the pinned state down.
type Dataplane struct {
	log   *slog.Logger
	dir   string
	maps  forwarderMaps
	progs forwarderPrograms
	// vrfIDs is a Go-only pinned map: VRF name (64 bytes, NUL padded) → id,
	// so that a restarted loader keeps every VRF's id.
	vrfIDs *ebpf.Map

	// nl and udp live in the network namespace Open was called in, so
	// that background work on any thread talks to the right one.
	nl  *netlink.Handle
	udp *net.UDPConn

	mu           sync.Mutex // guards every field below
	vrfs         map[string]uint32
	vrfNames     map[uint32]string // vrfs by id (routes_linux.go)
	vrfNext      uint32            // where the search for a free VRF id starts
	vrfSpace     uint32            // ids are 1..vrfSpace-1; 0 means maxVRFs (smaller in tests)
	groups       *groupTable
	routes       map[routeKey]routeEntry // installed routes
	routeDeletes int                     // deletions since routes was last rebuilt
	links        map[string]link.Link
	tunnel       tunnelState
	endpoints    map[netip.Addr]Endpoint
	resolved     map[netip.Addr]net.HardwareAddr // endpoint → MAC found by ResolveOnce
	ifSlots      map[int]uint32                  // attached ifindex → slot
	ifTable      *slotTable
	epSlots      map[netip.Addr]uint32 // endpoint → slot
	epRefs       map[uint32]int        // endpoint slot → groups using it
	epTable      *slotTable
	withdrawn    map[netip.Addr]bool // deleted endpoints that routes still name
	adopted      bool
	svc          *serviceTable // services, backends, flow hints (services_linux.go); nil until first used
	pol          *policyTable  // ACL policy (policy_linux.go); nil until first used

	// upgrade: Open upgraded pinned state across an ABI change and left
	// the links on the older programs until FinishUpgrade
	// (upgrade_linux.go); nil otherwise.
	upgrade *pendingUpgrade
}

// Open loads the forwarder, or adopts the one pinned under cfg.BPFFS by an
// earlier process, without interrupting forwarding: pinned maps are reused,
// pinned programs are reused when they were built from the same object, and
// pinned links are moved to the new programs atomically otherwise. State
// pinned by a forwarder of an older ABI is upgraded in place, and its
// links move only when FinishUpgrade is called (upgrade_linux.go); state
// of a newer ABI is refused.
//
// The dataplane belongs to the network namespace of the calling thread:
// its netlink work happens there whatever goroutine calls it, but
// AttachInterface and SetTunnel attach programs by ifindex and must be
// called from that namespace too.
func Open(cfg Config) (*Dataplane, error) {
	dir := cfg.BPFFS
	if dir == "" {
		dir = DefaultBPFFS
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := ensureBPFFS(dir); err != nil {
		return nil, err
	}
	for _, sub := range []string{"links"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("create %q: %w", sub, err)
		}
	}
	spec, err := loadForwarder()
	if err != nil {
		return nil, fmt.Errorf("load forwarder spec: %w", err)
	}
	d := &Dataplane{
		log:       log,
		dir:       dir,
		vrfs:      make(map[string]uint32),
		vrfNames:  make(map[uint32]string),
		groups:    newGroupTable(),
		routes:    make(map[routeKey]routeEntry),
		links:     make(map[string]link.Link),
		endpoints: make(map[netip.Addr]Endpoint),
		resolved:  make(map[netip.Addr]net.HardwareAddr),
		ifSlots:   make(map[int]uint32),
		ifTable:   newSlotTable(maxIfaceSlots),
		epSlots:   make(map[netip.Addr]uint32),
		epRefs:    make(map[uint32]int),
		epTable:   newSlotTable(maxEndpointSlots),
		withdrawn: make(map[netip.Addr]bool),
	}
	if d.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	if d.udp, err = net.ListenUDP("udp4", nil); err != nil {
		d.nl.Close()
		return nil, fmt.Errorf("open neighbor solicitation socket: %w", err)
	}
	if cfg.HostRoutes > 0 {
		spec.Maps[forwarderMapHostRoutes].MaxEntries = uint32(cfg.HostRoutes)
	}
	if cfg.FlowEntries > 0 {
		spec.Maps[forwarderMapFlows].MaxEntries = uint32(cfg.FlowEntries)
	}
	if d.upgrade, err = upgradePinned(dir, spec, log); err != nil {
		d.udp.Close()
		d.nl.Close()
		return nil, err
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}
	if err := spec.LoadAndAssign(&d.maps, opts); err != nil {
		d.udp.Close()
		d.nl.Close()
		return nil, fmt.Errorf("load maps under %q: %w", dir, err)
	}
	if err := d.loadPrograms(spec, opts); err != nil {
		d.closeHandles()
		return nil, err
	}
	if err := d.checkABI(); err != nil {
		d.closeHandles()
		return nil, err
	}
	if err := d.adopt(); err != nil {
		d.closeHandles()
		return nil, err
	}
	return d, nil
}

// objectHash identifies the compiled forwarder; pinned programs are reused
// only by a loader built from the same object.
func objectHash() string {
	sum := sha256.Sum256(_ForwarderBytes)
	return hex.EncodeToString(sum[:6])
}

func (d *Dataplane) progDir() string { return filepath.Join(d.dir, "progs-"+objectHash()) }

// loadPrograms adopts the programs pinned by a loader built from the same
// object, or loads them and pins them.
func (d *Dataplane) loadPrograms(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions) error {
	pdir := d.progDir()
	names := map[string]**ebpf.Program{
		forwarderProgPodIngress:      &d.progs.PodIngress,
		forwarderProgUnderlayIngress: &d.progs.UnderlayIngress,
		forwarderProgUnderlayXdp:     &d.progs.UnderlayXdp,
		forwarderProgPodXdp:          &d.progs.PodXdp,
	}
	adopted := 0
	for name, p := range names {
		prog, err := ebpf.LoadPinnedProgram(filepath.Join(pdir, name), nil)
		if err != nil {
			break
		}
		*p = prog
		adopted++
	}
	if adopted == len(names) {
		d.adopted = true
		d.log.Info("adopted pinned programs", "dir", pdir)
		return nil
	}
	d.progs.Close()
	d.progs = forwarderPrograms{}
	// Both XDP programs handle multi-buffer frames (they touch headers
	// only), so they attach to veths whose MTU exceeds a page.
	spec.Programs[forwarderProgUnderlayXdp].Flags |= unix.BPF_F_XDP_HAS_FRAGS
	spec.Programs[forwarderProgPodXdp].Flags |= unix.BPF_F_XDP_HAS_FRAGS
	if err := spec.LoadAndAssign(&d.progs, opts); err != nil {
		return fmt.Errorf("load programs: %w", err)
	}
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return fmt.Errorf("create program dir: %w", err)
	}
	for name, p := range names {
		path := filepath.Join(pdir, name)
		os.Remove(path)
		if err := (*p).Pin(path); err != nil {
			return fmt.Errorf("pin program %s: %w", name, err)
		}
	}
	d.log.Info("loaded programs", "dir", pdir)
	return nil
}

func abiMismatch(dir string, v uint32) error {
	return fmt.Errorf("pinned maps under %q have abi %d, want %d: remove that directory first (this interrupts forwarding until the new forwarder is attached)", dir, v, abiVersion)
}

func (d *Dataplane) checkABI() error {
	var zero, v uint32
	if err := d.maps.Abi.Lookup(&zero, &v); err != nil {
		return fmt.Errorf("read abi: %w", err)
	}
	switch v {
	case abiVersion:
		return nil
	case 0:
		if err := d.maps.Abi.Put(&zero, uint32(abiVersion)); err != nil {
			return fmt.Errorf("write abi: %w", err)
		}
		return nil
	}
	return abiMismatch(d.dir, v)
}

// adopt rebuilds the Go-side view (VRF ids, next-hop groups, routes, links)
// from pinned state, and moves pinned links to this process's programs.
func (d *Dataplane) adopt() error {
	var err error
	d.vrfIDs, err = ebpf.NewMapWithOptions(&ebpf.MapSpec{
		Name:       "vrf_ids",
		Type:       ebpf.Hash,
		KeySize:    vrfNameLen,
		ValueSize:  4,
		MaxEntries: maxVRFs,
		Pinning:    ebpf.PinByName,
	}, ebpf.MapOptions{PinPath: d.dir})
	if err != nil {
		return fmt.Errorf("load vrf ids: %w", err)
	}
	if err := d.loadVRFs(); err != nil {
		return err
	}
	if err := d.loadInterfaces(); err != nil {
		return err
	}
	if err := d.loadEndpoints(); err != nil {
		return err
	}
	if err := d.loadGroups(); err != nil {
		return err
	}
	if err := d.loadRoutes(); err != nil {
		return err
	}
	if err := d.loadTunnel(); err != nil {
		return err
	}
	return d.loadLinks()
}

// loadLinks opens every pinned link and points it at this process's program.
func (d *Dataplane) loadLinks() error {
	entries, err := os.ReadDir(filepath.Join(d.dir, "links"))
	if err != nil {
		return fmt.Errorf("read links: %w", err)
	}
	for _, e := range entries {
		path := filepath.Join(d.dir, "links", e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			d.log.Warn("drop unloadable pinned link", "path", path, "err", err)
			os.Remove(path)
			continue
		}
		prog := d.progForLink(e.Name())
		if prog == nil {
			l.Close()
			os.Remove(path)
			continue
		}
		info, err := l.Info()
		if err == nil && linkIfindex(info) == 0 {
			// The interface is gone; the link is defunct.
			l.Unpin()
			l.Close()
			continue
		}
		if d.upgrade != nil {
			d.links[e.Name()] = l // moved by FinishUpgrade
			continue
		}
		if err := l.Update(prog); err != nil {
			l.Close()
			return fmt.Errorf("update pinned link %s: %w", e.Name(), err)
		}
		d.links[e.Name()] = l
	}
	// Programs of older objects are no longer referenced by any link.
	olds, _ := filepath.Glob(filepath.Join(d.dir, "progs-*"))
	for _, old := range olds {
		if old != d.progDir() {
			os.RemoveAll(old)
		}
	}
	return nil
}

func linkIfindex(info *link.Info) int {
	if tcx := info.TCX(); tcx != nil {
		return int(tcx.Ifindex)
	}
	if xdp := info.XDP(); xdp != nil {
		return int(xdp.Ifindex)
	}
	return -1
}

func (d *Dataplane) progForLink(name string) *ebpf.Program {
	switch {
	case strings.HasPrefix(name, linkPodXDP):
		return d.progs.PodXdp
	case strings.HasPrefix(name, linkPod):
		return d.progs.PodIngress
	case strings.HasPrefix(name, linkUnderlayTC):
		return d.progs.UnderlayIngress
	case strings.HasPrefix(name, linkUnderlayXDP):
		return d.progs.UnderlayXdp
	}
	return nil
}

// Adopted reports whether Open found programs pinned by an earlier loader.
func (d *Dataplane) Adopted() bool { return d.adopted }

// Dir returns the bpffs directory the state is pinned in.
func (d *Dataplane) Dir() string { return d.dir }

func (d *Dataplane) closeHandles() {
	if d.nl != nil {
		d.nl.Close()
		d.nl = nil
	}
	if d.udp != nil {
		d.udp.Close()
		d.udp = nil
	}
	for _, l := range d.links {
		l.Close()
	}
	d.links = map[string]link.Link{}
	d.progs.Close()
	d.maps.Close()
	if d.vrfIDs != nil {
		d.vrfIDs.Close()
	}
}

// Close releases this process's handles. Pinned maps, programs and links
// stay, so forwarding continues until another loader adopts them.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeHandles()
	return nil
}

// Destroy detaches every program and removes the pinned state.
func (d *Dataplane) Destroy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for name, l := range d.links {
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", name, err))
		}
	}
	if err := d.removeHeadroomBridge(); err != nil {
		errs = append(errs, err)
	}
	d.closeHandles()
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		errs = append(errs, fmt.Errorf("read %q: %w", d.dir, err))
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".debug") {
			continue // the bpffs root's own iterators (maps.debug, progs.debug)
		}
		if err := os.RemoveAll(filepath.Join(d.dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("remove %q: %w", e.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// ensureBPFFS makes dir exist on a bpffs, mounting a bpffs on it if the
// directory is on another file system.
func ensureBPFFS(dir string) error {
	const sysBPF = "/sys/fs/bpf"
	if strings.HasPrefix(filepath.Clean(dir), sysBPF) {
		var st unix.Statfs_t
		if err := unix.Statfs(sysBPF, &st); err == nil && st.Type != unix.BPF_FS_MAGIC {
			if err := unix.Mount("bpf", sysBPF, "bpf", 0, ""); err != nil {
				return fmt.Errorf("mount bpffs on %s: %w", sysBPF, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create bpffs dir %q: %w", dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %q: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %q: %w", dir, err)
	}
	return nil
}
