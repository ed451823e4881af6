package nos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// Refresher re-reads a state subtree from its source (a pinned map, a
// kernel table) and writes it through the Core's UpdateState and
// DeleteState before it returns. path is the path a Get asked for, with
// its keys ("*" or absent for every entry), so that the refresher reads
// only what was asked.
type Refresher func(ctx context.Context, path *gpb.Path) error

// onDemand is one registered refresher.
type onDemand struct {
	ctx    context.Context // the registration ends when it is done
	prefix []string        // schema element names
	fn     Refresher
}

// onDemandSet holds the refreshers of a Core.
type onDemandSet struct {
	mu   sync.Mutex // guards list
	list []*onDemand
}

// RefreshOnRequest registers fn for the state at prefix, a schema path
// of element names without keys ("/network-instances/network-instance/
// services/service/state/flows"), until ctx is done. A Get of state whose
// path lies inside prefix or above it calls RefreshState first, which
// calls fn, so that the answer is read from the source at request time
// rather than at the last periodic publication.
func (c *Core) RefreshOnRequest(ctx context.Context, prefix string, fn Refresher) {
	var elems []string
	for _, e := range strings.Split(strings.Trim(prefix, "/"), "/") {
		if e != "" {
			elems = append(elems, e)
		}
	}
	s := &c.onDemand
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, &onDemand{ctx: ctx, prefix: elems, fn: fn})
}

// RefreshState calls every refresher registered for state that path
// covers or lies in, in the order they were registered, and returns
// their errors joined. Refreshers whose registration ended are dropped.
func (c *Core) RefreshState(ctx context.Context, path *gpb.Path) error {
	s := &c.onDemand
	s.mu.Lock()
	var due []*onDemand
	live := s.list[:0]
	for _, o := range s.list {
		if o.ctx.Err() != nil {
			continue
		}
		live = append(live, o)
		if overlaps(o.prefix, path.GetElem()) {
			due = append(due, o)
		}
	}
	clear(s.list[len(live):])
	s.list = live
	s.mu.Unlock()
	var errs []error
	for _, o := range due {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := o.fn(ctx, path); err != nil {
			errs = append(errs, fmt.Errorf("refresh /%s: %w", strings.Join(o.prefix, "/"), err))
		}
	}
	return errors.Join(errs...)
}

// overlaps reports whether one of the paths is a prefix of the other, by
// element names (keys do not matter: the refresher filters by them).
func overlaps(prefix []string, elems []*gpb.PathElem) bool {
	for i := 0; i < len(prefix) && i < len(elems); i++ {
		if name := elems[i].GetName(); name != prefix[i] && name != "*" && name != "..." {
			return false
		}
	}
	return true
}
