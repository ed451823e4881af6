package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/run/netns"

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// Leftovers are the namespaces with a prefix, the processes inside them and
// the mounts (bpffs for pinned eBPF state) under paths named by the prefix.
type Leftovers struct {
	// Namespaces are the names of the namespaces that exist.
	Namespaces []string
	// PIDs are the processes whose network namespace is one of them.
	PIDs []int
	// Mounts are mount points with a path element that starts with the
	// prefix, deepest first.
	Mounts []string
}

// Empty reports whether nothing is left.
func (l Leftovers) Empty() bool {
	return len(l.Namespaces) == 0 && len(l.PIDs) == 0 && len(l.Mounts) == 0
}

// FindLeftovers lists the namespaces whose name starts with prefix and the
// processes that live in them.
func FindLeftovers(prefix string) (Leftovers, error) {
	if !strings.HasPrefix(prefix, PrefixBase) {
		return Leftovers{}, fmt.Errorf("find leftovers: prefix %q does not start with %q", prefix, PrefixBase)
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Leftovers{}, fmt.Errorf("list namespaces: %w", err)
	}
	var l Leftovers
	l.Mounts, err = prefixMounts(prefix)
	if err != nil {
		return Leftovers{}, err
	}
	inodes := map[uint64]bool{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		l.Namespaces = append(l.Namespaces, e.Name())
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netnsDir, e.Name()), &st); err == nil {
			inodes[st.Ino] = true
		}
	}
	if len(inodes) == 0 {
		return l, nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return Leftovers{}, fmt.Errorf("list processes: %w", err)
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if ino, ok := processNetns(pid); ok && inodes[ino] && alive(pid) {
			l.PIDs = append(l.PIDs, pid)
		}
	}
	return l, nil
}

// processNetns returns the inode of pid's network namespace.
func processNetns(pid int) (uint64, bool) {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return 0, false
	}
	s := strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]")
	ino, err := strconv.ParseUint(s, 10, 64)
	return ino, err == nil
}

// prefixMounts lists the mount points of the caller's mount namespace that
// have a path element starting with prefix ("ist-3fa9c1" in a run
// directory's path counts), deepest first.
func prefixMounts(prefix string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || strings.HasPrefix(f[4], netnsDir+"/") {
			continue // namespace handles go with `ip netns delete`
		}
		for _, el := range strings.Split(f[4], "/") {
			if strings.HasPrefix(el+"-", prefix) {
				mounts = append(mounts, f[4])
				break
			}
		}
	}
	slices.SortFunc(mounts, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return slices.Compact(mounts), nil
}

// Sweep kills every process inside the namespaces whose name starts with
// prefix, unmounts what is mounted under paths named by the prefix, then
// deletes those namespaces; their veths and bridges go with them. Prefix PrefixBase sweeps every run on the machine.
func Sweep(ctx context.Context, log *slog.Logger, prefix string) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := FindLeftovers(prefix)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", prefix, err)
	}
	var errs []error
	for _, pid := range l.PIDs {
		log.Info("killing leftover process", "pid", pid, "comm", processName(pid))
		errs = append(errs, killPID(ctx, pid))
	}
	for _, m := range l.Mounts {
		log.Info("unmounting", "path", m)
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, name := range l.Namespaces {
		log.Info("deleting namespace", "netns", name)
		out, err := exec.CommandContext(ctx, "ip", "netns", "delete", name).CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("delete netns %s: %w: %s", name, err, strings.TrimSpace(string(out))))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep %s: %w", prefix, err)
	}
	return nil
}

// killRecord kills a recorded process if it is still the same process.
func killRecord(ctx context.Context, p ProcessRecord) error {
	ticks, ok := startTicks(p.PID)
	if !ok || ticks != p.StartTicks {
		return nil // gone, or the pid now belongs to someone else
	}
	return killPID(ctx, p.PID)
}

// killPID sends SIGTERM to pid (and its group when it leads one), waits up
// to stopGrace, then sends SIGKILL and waits for it to go.
func killPID(ctx context.Context, pid int) error {
	signal := func(sig syscall.Signal) {
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			_ = syscall.Kill(-pid, sig) // the group leader's own kill below reports errors
		}
		_ = syscall.Kill(pid, sig) // ESRCH only means it is gone
	}
	signal(syscall.SIGTERM)
	if waitGone(ctx, pid, stopGrace) {
		return nil
	}
	signal(syscall.SIGKILL)
	if waitGone(ctx, pid, stopGrace) {
		return nil
	}
	return fmt.Errorf("kill pid %d: still running", pid)
}

func waitGone(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	state, ok := procStat(pid, 3)
	return ok && state != "Z" && state != "X"
}

// startTicks returns field 22 of /proc/PID/stat, the start time in ticks.
func startTicks(pid int) (uint64, bool) {
	s, ok := procStat(pid, 22)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// procStat returns field n (1-based, as in proc(5)) of /proc/PID/stat.
func procStat(pid, n int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || n < 3 {
		return "", false
	}
	fields := strings.Fields(s[i+1:])
	if n-3 >= len(fields) {
		return "", false
	}
	return fields[n-3], true
}

func processName(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}
