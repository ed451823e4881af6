//go:build !linux

package dataplane

import (
	"context"
	"errors"
	"time"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// ReconcilerConfig configures the dataplane reconciler.
type ReconcilerConfig struct {
	Config
	// StateInterval is how often counters are published as state.
	StateInterval time.Duration
	// NeighborInterval is how often endpoint MACs are re-resolved.
	NeighborInterval time.Duration
	// StaleGrace is how long adopted routes survive unconfirmed.
	StaleGrace time.Duration
}

// Reconciler is the dataplane reconciler; the forwarder only exists on
// Linux, so here it validates and refuses to start.
type Reconciler struct{}

// New returns a reconciler that fails to start on this platform.
func New(ReconcilerConfig) *Reconciler { return &Reconciler{} }

// ID implements nos.Reconciler.
func (*Reconciler) ID() string { return "dataplane" }

// Start implements nos.Reconciler.
func (*Reconciler) Start(context.Context, *nos.Core) error {
	return errors.New("start dataplane: the eBPF forwarder needs linux")
}

// Validate implements nos.Reconciler.
func (*Reconciler) Validate(intended *gen.Device) error {
	in, err := intentOf(intended)
	if err != nil {
		return err
	}
	return in.validate()
}

// Apply implements nos.Reconciler.
func (*Reconciler) Apply(context.Context, *gen.Device, *gen.Device) error {
	return errors.New("apply dataplane: the eBPF forwarder needs linux")
}

// Stop implements nos.Reconciler.
func (*Reconciler) Stop(context.Context) error { return nil }
