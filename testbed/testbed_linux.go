package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultRoot holds one run directory per run when Options.Dir is empty.
const DefaultRoot = "/run/isthmus-testbed"

// Options tune Up.
type Options struct {
	// Log receives progress; nil discards.
	Log *slog.Logger
	// Dir is the run directory (state file, logs, daemon sockets). Empty
	// means DefaultRoot/<run id>. FRR drops privileges to its own user, so
	// the directory's parents must be traversable by all (t.TempDir's are not).
	Dir string
	// Prefix starts every namespace name; empty means NewPrefix().
	Prefix string
	// Progress, when set, is called after each step that succeeded.
	Progress func(done, total int, s Step)
}

// Testbed is a topology that is up, or partly up.
type Testbed struct {
	log    *slog.Logger
	dir    string
	topo   *Topology
	prefix string
	state  *stateStore

	mu    sync.Mutex // guards procs
	procs map[int]*Process
}

// Up builds the topology: it runs every step of Plan in order, recording
// each namespace in the state file before creating it. When a step fails it
// tears down what it built and returns the error.
func Up(ctx context.Context, topo *Topology, opts Options) (*Testbed, error) {
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = NewPrefix()
	}
	if !ValidPrefix(prefix) {
		return nil, fmt.Errorf("up %s: bad prefix %q", topo.Name, prefix)
	}
	dir := opts.Dir
	if dir == "" {
		dir = filepath.Join(DefaultRoot, strings.TrimSuffix(prefix, "-"))
	}
	if err := makeRunDir(dir); err != nil {
		return nil, fmt.Errorf("up %s: %w", topo.Name, err)
	}
	store, err := newStateStore(dir, State{Prefix: prefix, Topology: topo, Created: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("up %s: %w", topo.Name, err)
	}
	tb := &Testbed{log: log, dir: dir, topo: topo, prefix: prefix, state: store, procs: map[int]*Process{}}
	log.Info("building topology", "topology", topo.Name, "prefix", prefix, "dir", dir)
	steps := Plan(topo, prefix)
	for i, s := range steps {
		if err := tb.runStep(ctx, s); err != nil {
			downErr := tb.Down(context.WithoutCancel(ctx))
			return nil, errors.Join(fmt.Errorf("up %s: %w", topo.Name, err), downErr)
		}
		if opts.Progress != nil {
			opts.Progress(i+1, len(steps), s)
		}
	}
	log.Info("topology up", "topology", topo.Name, "namespaces", len(topo.Nodes), "steps", len(steps))
	return tb, nil
}

// makeRunDir creates dir and its logs folder, readable and traversable by
// all; FRR drops privileges to its own user and needs to reach its sockets.
func makeRunDir(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	return nil
}

func (tb *Testbed) runStep(ctx context.Context, s Step) error {
	if s.Kind == StepNamespace {
		if err := tb.state.addNamespace(s.Namespace); err != nil {
			return err
		}
	}
	tb.log.Debug("step", "cmd", s.String())
	out, err := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("run %s: %w: %s", s, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Open attaches to the run recorded in dir, for Exec, Status and Down.
// Processes started by another program are known only by their records.
func Open(dir string, log *slog.Logger) (*Testbed, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := ReadState(dir)
	if err != nil {
		return nil, fmt.Errorf("open run %s: %w", dir, err)
	}
	if !ValidPrefix(st.Prefix) || st.Topology == nil {
		return nil, fmt.Errorf("open run %s: state has no valid prefix or topology", dir)
	}
	store := &stateStore{path: filepath.Join(dir, StateFile), st: st}
	return &Testbed{log: log, dir: dir, topo: st.Topology, prefix: st.Prefix, state: store, procs: map[int]*Process{}}, nil
}

// Dir returns the run directory.
func (tb *Testbed) Dir() string { return tb.dir }

// Prefix returns the run's namespace prefix.
func (tb *Testbed) Prefix() string { return tb.prefix }

// Topology returns the topology the run built.
func (tb *Testbed) Topology() *Topology { return tb.topo }

// State returns a copy of the run's state.
func (tb *Testbed) State() State { return tb.state.snapshot() }

// Namespace returns the namespace name of node.
func (tb *Testbed) Namespace(node string) string { return Namespace(tb.prefix, node) }

// Exec runs argv inside node and returns its combined output; a failure
// carries the output in its message.
func (tb *Testbed) Exec(ctx context.Context, node string, argv ...string) ([]byte, error) {
	if _, ok := tb.topo.Node(node); !ok {
		return nil, fmt.Errorf("exec in %q: unknown node", node)
	}
	args := append([]string{"netns", "exec", tb.Namespace(node)}, argv...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("exec %q in %s: %w: %s", strings.Join(argv, " "), node, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Down stops the processes this Testbed started, then everything else the
// run recorded or left in its namespaces, and deletes the namespaces. It
// keeps the run directory (logs); RemoveDir removes it.
func (tb *Testbed) Down(ctx context.Context) error {
	tb.mu.Lock()
	procs := make([]*Process, 0, len(tb.procs))
	for _, p := range tb.procs {
		procs = append(procs, p)
	}
	tb.mu.Unlock()
	var errs []error
	for _, p := range procs {
		if err := p.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, downRecorded(ctx, tb.log, tb.state.snapshot()))
	if err := os.Remove(tb.state.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove state: %w", err))
	}
	return errors.Join(errs...)
}

// RemoveDir deletes the run directory with its logs.
func (tb *Testbed) RemoveDir() error {
	if err := os.RemoveAll(tb.dir); err != nil {
		return fmt.Errorf("remove run dir: %w", err)
	}
	return nil
}

// Down removes the run recorded in dir: its recorded processes, anything
// else running in its namespaces, and the namespaces. It works after the
// builder crashed at any point, and when there is nothing left to remove.
func Down(ctx context.Context, log *slog.Logger, dir string) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("down %s: %w", dir, err)
	}
	if err := downRecorded(ctx, log, st); err != nil {
		return fmt.Errorf("down %s: %w", dir, err)
	}
	if err := os.Remove(filepath.Join(dir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("down %s: remove state: %w", dir, err)
	}
	return nil
}

func downRecorded(ctx context.Context, log *slog.Logger, st State) error {
	var errs []error
	for _, p := range st.Processes {
		if err := killRecord(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	if ValidPrefix(st.Prefix) {
		errs = append(errs, Sweep(ctx, log, st.Prefix))
	}
	// Namespaces recorded but outside the prefix cannot exist; the sweep
	// covered every recorded one.
	return errors.Join(errs...)
}
