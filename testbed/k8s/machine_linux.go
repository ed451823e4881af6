package k8s

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MachineSnapshot is what a cluster run could leave on the machine, taken
// before the run, so that LeftSince can compare the machine after the
// teardown with it without trusting what the cluster recorded: mounts,
// named network namespaces, cgroup directories, containerd's files under
// /run/containerd, the kubelet's and the container logs' host directories,
// and processes.
type MachineSnapshot struct {
	mounts  map[string]string // mount id and point → description
	netns   map[string]bool   // names under /run/netns
	cgroups map[string]bool   // cgroup directories, two levels deep
	files   map[string]bool   // entries under hostStateDirs
	procs   map[string]procInfo
}

// procInfo is a process of a snapshot, keyed by pid and start time (pids
// are reused).
type procInfo struct {
	pid     int
	name    string // the executable's base name, else argv[0]'s
	cmdline string // arguments joined by spaces
	cgroup  string // /proc/<pid>/cgroup
}

// hostStateDirs are the machine-wide directories a node's containerd and
// kubelet write to whatever their own directories are (shim sockets and
// fifos, the device-plugin and pod-resources sockets, container log
// links), and /run/isthmus (the nodes' host view with OwnMounts).
var hostStateDirs = []string{"/run/containerd", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/isthmus"}

// clusterBinaries are the programs a cluster run starts (names, or name
// prefixes ending in "*").
var clusterBinaries = []string{"kubelet", "containerd", "containerd-shim*", "etcd", "kube-*", "isthmusd"}

// SnapshotMachine records the machine's state for LeftSince.
func SnapshotMachine() *MachineSnapshot {
	s := &MachineSnapshot{mounts: map[string]string{}, netns: map[string]bool{}, cgroups: map[string]bool{}, files: map[string]bool{}, procs: map[string]procInfo{}}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			sep := slices.Index(f, "-")
			if len(f) < 5 || sep < 0 || len(f) < sep+3 {
				continue
			}
			s.mounts[f[0]+" "+unescapeMount(f[4])] = fmt.Sprintf("%s (%s from %s, root %s)", unescapeMount(f[4]), f[sep+1], f[sep+2], unescapeMount(f[3]))
		}
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			s.netns[e.Name()] = true
		}
	}
	for _, h := range cgroupHierarchies() {
		walkDepth(h, 2, func(p string, d fs.DirEntry) {
			if d.IsDir() {
				s.cgroups[p] = true
			}
		})
	}
	for _, dir := range hostStateDirs {
		if exists(dir) {
			s.files[dir] = true
		}
		walkDepth(dir, 3, func(p string, _ fs.DirEntry) { s.files[p] = true })
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		start, ok := processStart(pid)
		if !ok {
			continue
		}
		raw, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		name := filepath.Base(args[0])
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil {
			name = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		s.procs[e.Name()+":"+start] = procInfo{pid: pid, name: name, cmdline: strings.Join(args, " "), cgroup: string(cg)}
	}
	return s
}

// LeftSince compares the machine now with before and lists, one phrase
// each, what appeared since and could only be the run's with prefix (a
// testbed prefix such as "ist-3fa9c1-"): mounts, named namespaces,
// top-level cgroups and processes named by the prefix or living in its
// cgroups, and anything new under /run/netns/cni-*, the kubelet's and
// containerd's default cgroups and hostStateDirs, and new processes of
// clusterBinaries started from the run's files. Other runs on the machine
// use their own prefixes and are left out; a second cluster running at
// the same time is not (only clusters write where containerd and the
// kubelet write).
func (before *MachineSnapshot) LeftSince(prefix string) []string {
	stem := strings.TrimSuffix(prefix, "-")
	named := func(p string) bool {
		for _, el := range strings.Split(p, "/") {
			if el == stem || strings.HasPrefix(el, stem+"-") {
				return true
			}
		}
		return false
	}
	clusterPath := func(p string) bool {
		if named(p) || strings.HasPrefix(p, "/run/netns/cni-") {
			return true
		}
		for _, d := range hostStateDirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	now := SnapshotMachine()
	var left []string
	for _, k := range keysInOrder(now.mounts) {
		if _, ok := before.mounts[k]; !ok && clusterPath(strings.SplitN(k, " ", 2)[1]) {
			left = append(left, "mount "+now.mounts[k])
		}
	}
	for _, n := range keysInOrder(now.netns) {
		if !before.netns[n] && (named(n) || strings.HasPrefix(n, "cni-")) {
			left = append(left, "network namespace "+n)
		}
	}
	for _, h := range cgroupHierarchies() {
		for _, p := range keysInOrder(now.cgroups) {
			rel, err := filepath.Rel(h, p)
			if err != nil || strings.HasPrefix(rel, "..") || before.cgroups[p] {
				continue
			}
			top := strings.Split(rel, "/")[0]
			if named(top) || slices.Contains([]string{"kubepods", "kubepods.slice", "k8s.io", "default"}, top) {
				left = append(left, "cgroup "+p)
			}
		}
	}
	for _, p := range keysInOrder(now.files) {
		if !before.files[p] {
			left = append(left, "file "+p)
		}
	}
	for _, k := range keysInOrder(now.procs) {
		p := now.procs[k]
		if _, ok := before.procs[k]; ok {
			continue
		}
		inCgroup := strings.Contains(p.cgroup, "/"+stem+"-")
		if inCgroup || (clusterBinary(p.name) && strings.Contains(p.cmdline, stem)) {
			left = append(left, fmt.Sprintf("process %d (%s)", p.pid, p.cmdline))
		}
	}
	return left
}

// clusterBinary reports whether name is one of clusterBinaries.
func clusterBinary(name string) bool {
	for _, b := range clusterBinaries {
		if p, ok := strings.CutSuffix(b, "*"); ok && strings.HasPrefix(name, p) || name == b {
			return true
		}
	}
	return false
}

// walkDepth calls fn for every entry below root down to depth levels.
func walkDepth(root string, depth int, fn func(string, fs.DirEntry)) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil // vanished meanwhile, or unreadable: nothing to compare
		}
		rel, _ := filepath.Rel(root, p)
		fn(p, d)
		if d.IsDir() && strings.Count(rel, "/")+1 >= depth {
			return filepath.SkipDir
		}
		return nil
	})
}

// processStart returns pid's start time in clock ticks since boot, as text.
func processStart(pid int) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", false
	}
	return f[19], true // field 22 of stat; f starts at field 3
}

// keysInOrder returns m's keys sorted.
func keysInOrder[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
