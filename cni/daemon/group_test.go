package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// slowCore counts commits; each takes a while, so callers pile up.
type slowCore struct {
	mu      sync.Mutex // guards commits, running
	commits int
	running *gen.Device
	gate    func() // if set, runs before the first commit
}

func (c *slowCore) CommitEntries(_ context.Context, _ string, _ []*gpb.Path, edit func(*gen.Device) error) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate != nil {
		c.gate()
		c.gate = nil
	}
	time.Sleep(5 * time.Millisecond)
	cand, err := ygot.DeepCopy(c.running)
	if err != nil {
		return 0, err
	}
	if err := edit(cand.(*gen.Device)); err != nil {
		return 0, err
	}
	c.running = cand.(*gen.Device)
	c.commits++
	return uint64(c.commits), nil
}

func (c *slowCore) Read(fn func(config, state *gen.Device) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fn(c.running, nil)
}

// commitConcurrently runs n edits at once; edit bad fails.
func commitConcurrently(g *groupCommitter, n, bad int, errBad error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.commit(context.Background(), nil, func(d *gen.Device) error {
				if i == bad {
					return errBad
				}
				d.GetOrCreateInterfaces().GetOrCreateInterface(fmt.Sprintf("if%d", i))
				return nil
			})
		}()
	}
	wg.Wait()
	return errs
}

func TestGroupCommitShares(t *testing.T) {
	core := &slowCore{running: &gen.Device{}}
	const n = 40
	g := &groupCommitter{core: core}
	// Hold the first commit until every other edit is queued behind it.
	core.gate = func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			g.mu.Lock()
			queued := len(g.queue)
			g.mu.Unlock()
			if queued == n-1 {
				return
			}
		}
	}
	for i, err := range commitConcurrently(g, n, -1, nil) {
		if err != nil {
			t.Fatalf("edit %d: %v", i, err)
		}
	}
	if got := len(core.running.GetInterfaces().Interface); got != n {
		t.Fatalf("%d interfaces committed, want %d", got, n)
	}
	if core.commits != 2 {
		t.Fatalf("%d commits for %d edits, want 2 (the first alone, then the rest)", core.commits, n)
	}
}

func TestGroupCommitIsolatesFailures(t *testing.T) {
	core := &slowCore{running: &gen.Device{}}
	const n = 20
	bad := errors.New("bad edit")
	for i, err := range commitConcurrently(&groupCommitter{core: core}, n, 7, bad) {
		if (i == 7) != errors.Is(err, bad) {
			t.Fatalf("edit %d: err = %v", i, err)
		}
	}
	if got := len(core.running.GetInterfaces().Interface); got != n-1 {
		t.Fatalf("%d interfaces committed, want %d", got, n-1)
	}
}
