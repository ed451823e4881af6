package nos

import (
	"context"

	"github.com/isthmus-net/isthmus/gen"
)

// Reconciler turns committed intent into the state of one subsystem (BGP,
// the dataplane). The core calls Validate for every candidate and Apply for
// every commit, in the order the reconcilers were registered. A reconciler
// reads config leaves and writes only state leaves, through the State it is
// given in Start.
type Reconciler interface {
	// ID names the reconciler in logs and errors ("bgp", "dataplane").
	ID() string
	// Start is called once before the first Apply. Long-running work (event
	// watches, counter polling) runs until ctx is done. The reconciler keeps
	// core to publish state, read the FIB and allocate labels.
	Start(ctx context.Context, core *Core) error
	// Validate checks constraints that only this reconciler knows about. It
	// must not change anything. The error should name the offending path.
	Validate(intended *gen.Device) error
	// Apply moves the subsystem from old to intended. old is an empty device
	// on the first call. When a later reconciler fails, the core calls
	// Apply(ctx, intended, old) to roll back. Apply must not keep references
	// to old or intended after it returns; both are read-only.
	Apply(ctx context.Context, old, intended *gen.Device) error
	// Stop releases what Start took. It must not undo forwarding state that
	// is meant to survive a daemon restart (pinned eBPF maps, BGP graceful
	// restart).
	Stop(ctx context.Context) error
}
