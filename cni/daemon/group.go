package daemon

import (
	"context"
	"sync"

	gpb "github.com/openconfig/gnmi/proto/gnmi"

	"github.com/isthmus-net/isthmus/gen"
)

// groupCommitter folds the edits of concurrent requests into one core
// commit. Each edit names the entries it changes (the host interfaces of
// its attachments), so a commit copies and compares those entries only,
// however large the configuration (nos.Core.CommitEntries); what remains
// of its cost (validation, reconcilers, one bbolt transaction with its
// fsync) is about the same for one attachment as for twenty, so when many
// pods start at once, those that arrive while a commit runs share the
// next one.
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
	entries []*gpb.Path // what edit changes (nos.InterfaceEntry)
	edit    func(*gen.Device) error
	done    chan editOutcome // capacity 1
}

type editOutcome struct {
	rev  uint64
	err  error
	lead bool // not a result: the receiver now leads
}

// commit applies edit, which changes only the entries named (edit sees
// only those), in a commit shared with concurrent callers and returns
// that commit's revision. A queued edit is committed even if ctx is
// cancelled meanwhile, so the caller always learns its fate.
func (g *groupCommitter) commit(ctx context.Context, entries []*gpb.Path, edit func(*gen.Device) error) (uint64, error) {
	p := &pendingEdit{entries: entries, edit: edit, done: make(chan editOutcome, 1)}
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
	var entries []*gpb.Path
	for _, p := range batch {
		entries = append(entries, p.entries...)
	}
	rev, err := g.core.CommitEntries(ctx, committer, entries, func(d *gen.Device) error {
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
		rev, err := g.core.CommitEntries(ctx, committer, p.entries, p.edit)
		p.done <- editOutcome{rev: rev, err: err}
	}
}
