package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Process is a long-running program started in a node. It leads its own
// process group, writes its output to a log file in the run directory, and
// outlives the program that started it until Stop or Down.
type Process struct {
	// Node is the node it runs in.
	Node string
	// Name names it in the run.
	Name string
	// PID is its process id.
	PID int
	// Log is the file that holds its stdout and stderr.
	Log string

	tb   *Testbed
	done chan struct{}
	err  error // the result of Wait; set before done is closed
}

// StartOptions tune how a process enters its node.
type StartOptions struct {
	// HostMounts enters only the node's network namespace (nsenter --net)
	// instead of `ip netns exec`, which also gives the process a private
	// mount namespace with a fresh /sys. Daemons that mount or pin on
	// bpffs need it, so that their pins outlive them; sysfs then shows the
	// caller's interfaces, netlink the node's.
	HostMounts bool
}

// Start runs argv inside node as a long-running process named name, with
// its output appended to <run dir>/logs/<node>-<name>.log, and records it
// in the state file.
func (tb *Testbed) Start(ctx context.Context, node, name string, argv ...string) (*Process, error) {
	return tb.StartWith(ctx, node, name, StartOptions{}, argv...)
}

// StartWith is Start with options.
func (tb *Testbed) StartWith(ctx context.Context, node, name string, o StartOptions, argv ...string) (*Process, error) {
	if _, ok := tb.topo.Node(node); !ok {
		return nil, fmt.Errorf("start %s in %q: unknown node", name, node)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s in %s: empty command", name, node)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, node, err)
	}
	logPath := filepath.Join(tb.dir, "logs", node+"-"+name+".log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s in %s: open log: %w", name, node, err)
	}
	defer logFile.Close() // the child holds its own copy
	// Not CommandContext: the process outlives ctx, which bounds only the start.
	enter := []string{"ip", "netns", "exec", tb.Namespace(node)}
	if o.HostMounts {
		enter = []string{"nsenter", "--net=" + filepath.Join(netnsDir, tb.Namespace(node)), "--"}
	}
	cmd := exec.Command(enter[0], append(enter[1:], argv...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // its own session and group: no terminal hangup reaches it
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, node, err)
	}
	p := &Process{Node: node, Name: name, PID: cmd.Process.Pid, Log: logPath, tb: tb, done: make(chan struct{})}
	ticks, _ := startTicks(p.PID) // 0 when it already exited; Down then skips the record
	tb.mu.Lock()
	tb.procs[p.PID] = p
	tb.mu.Unlock()
	recErr := tb.state.addProcess(ProcessRecord{Node: node, Name: name, PID: p.PID, StartTicks: ticks, Log: logPath})
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		tb.mu.Lock()
		delete(tb.procs, p.PID)
		tb.mu.Unlock()
		if err := tb.state.removeProcess(p.PID); err != nil {
			tb.log.Warn("forget process", "node", node, "name", name, "err", err)
		}
	}()
	if recErr != nil {
		return p, errors.Join(fmt.Errorf("start %s in %s: %w", name, node, recErr), p.Stop(ctx))
	}
	tb.log.Info("started", "node", node, "name", name, "pid", p.PID, "log", logPath)
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process exited; it is nil while it runs.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after a grace
// period, and waits until the process has exited. Stopping an exited
// process is not an error.
func (p *Process) Stop(ctx context.Context) error {
	return p.stop(ctx, syscall.SIGTERM)
}

// Kill sends SIGKILL to the process group at once, as a crash would, and
// waits until the process has exited.
func (p *Process) Kill(ctx context.Context) error {
	return p.stop(ctx, syscall.SIGKILL)
}

func (p *Process) stop(ctx context.Context, sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.PID, sig) // ESRCH only means it already exited
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		return fmt.Errorf("stop %s in %s: pid %d did not exit", p.Name, p.Node, p.PID)
	}
}

// Tail returns the last n lines of the process's log, for error messages.
func (p *Process) Tail(n int) string {
	data, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
