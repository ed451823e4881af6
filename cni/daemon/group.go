package daemon

import (
	"context"
	"sync"

	"github.com/isthmus-net/isthmus/gen"
)

// groupCommitter folds the edits of concurrent requests into one core
// commit. A commit costs about the same for one attachment as for twenty
// (the core validates and diffs the whole tree), so when many pods start at
// once, those that arrive while a commit runs share the next one.
//
// There is no background goroutine: the first caller leads and commits
// what is queued; when it is done it hands the lead to the first caller
// still queued.
type groupCommitter struct {
	core Core

	mu    sync.Mutex // guards queue, busy
	queue []*pendingEdit
	busy  bool // a leader is committing
}

type pendingEdit struct {
	edit func(*gen.Device) error
	done chan editOutcome // capacity 1
}

type editOutcome struct {
	rev  uint64
	err  error
	lead bool // not a result: the receiver now leads
}

// commit applies edit in a commit shared with concurrent callers and
// returns that commit's revision. A queued edit is committed even if ctx
// is cancelled meanwhile, so the caller always learns its fate.
func (g *groupCommitter) commit(ctx context.Context, edit func(*gen.Device) error) (uint64, error) {
	p := &pendingEdit{edit: edit, done: make(chan editOutcome, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, p)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead {
		o := <-p.done
		if !o.lead {
			return o.rev, o.err
		}
	}
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()

	g.run(context.WithoutCancel(ctx), batch)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- editOutcome{lead: true}
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	o := <-p.done
	return o.rev, o.err
}

// run commits a batch at once; if that fails, each edit alone, so one bad
// edit fails only its own request.
func (g *groupCommitter) run(ctx context.Context, batch []*pendingEdit) {
	rev, err := g.core.Commit(ctx, committer, func(d *gen.Device) error {
		for _, p := range batch {
			if err := p.edit(d); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, p := range batch {
			p.done <- editOutcome{rev: rev, err: err}
		}
		return
	}
	for _, p := range batch {
		rev, err := g.core.Commit(ctx, committer, p.edit)
		p.done <- editOutcome{rev: rev, err: err}
	}
}
