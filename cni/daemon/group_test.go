package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// slowCore counts commits; each takes a while, so callers pile up.
type slowCore struct {
	mu      sync.Mutex // guards commits, running
	commits int
	running *gen.Device
}

func (c *slowCore) Commit(_ context.Context, _ string, edit func(*gen.Device) error) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
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

func TestGroupCommitSharesCommitsAndIsolatesFailures(t *testing.T) {
	core := &slowCore{running: &gen.Device{}}
	g := &groupCommitter{core: core}
	const n = 40
	bad := errors.New("bad edit")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.commit(context.Background(), func(d *gen.Device) error {
				if i == 7 {
					return bad
				}
				d.GetOrCreateInterfaces().GetOrCreateInterface(fmt.Sprintf("if%d", i))
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 7) != errors.Is(err, bad) {
			t.Fatalf("edit %d: err = %v", i, err)
		}
	}
	var got int
	_ = core.Read(func(d *gen.Device, _ *gen.Device) error { got = len(d.GetInterfaces().Interface); return nil })
	if got != n-1 {
		t.Fatalf("%d interfaces committed, want %d", got, n-1)
	}
	if core.commits >= n-1 {
		t.Fatalf("%d commits for %d edits: nothing was shared", core.commits, n-1)
	}
	t.Logf("%d edits in %d commits", n, core.commits)
}
