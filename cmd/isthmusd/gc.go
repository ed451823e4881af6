package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The daemon holds its whole configuration, its state mirror and the
// telemetry cache in memory: 137 MB of live heap at 10,000 VRFs in the
// core alone. With Go's default target (the heap may grow to twice the
// live heap) a collection came every 600 one-VRF Sets and marked all of
// it: 0.8 ms of CPU per Set, a third of what a Set costs, and the
// collector's pauses and assists set the Set's 99th percentile
// (docs/benchmarks.md, "gNMI Set at 10 and 10,000 VRFs"). So the daemon
// lets the heap grow to up to five times the live heap while that stays
// within a budget, and never to less than Go's default.

const (
	gcPercentMin     = 100     // Go's default: the heap may grow to twice the live heap
	gcPercentMax     = 400     // five times the live heap at most
	gcDefaultBudget  = 1 << 30 // the heap budget when GOMEMLIMIT does not set one
	gcTuneInterval   = 5 * time.Second
	gcLiveHeapMetric = "/gc/heap/live:bytes"
)

// gcPercent returns the collector's target for a live heap of live bytes
// within budget: the heap may grow to the budget, but to no less than
// twice the live heap (Go's default) and to no more than five times.
func gcPercent(live, budget uint64) int {
	if live == 0 || budget <= 2*live {
		return gcPercentMin
	}
	p := (budget - live) * 100 / live
	if p > gcPercentMax {
		return gcPercentMax
	}
	if p < gcPercentMin {
		return gcPercentMin
	}
	return int(p)
}

// tuneGC sets the collector's target from the live heap every
// gcTuneInterval until ctx is done. The budget is GOMEMLIMIT when set,
// else gcDefaultBudget; a GOGC in the environment is the operator's
// choice and turns the tuning off.
func tuneGC(ctx context.Context, log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		log.Info("garbage collector target left to GOGC", "gogc", os.Getenv("GOGC"))
		return
	}
	budget := uint64(gcDefaultBudget)
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit < math.MaxInt64 {
		budget = uint64(limit)
	}
	sample := []metrics.Sample{{Name: gcLiveHeapMetric}}
	set := -1
	tick := time.NewTicker(gcTuneInterval)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercent(sample[0].Value.Uint64(), budget); p != set {
				debug.SetGCPercent(p)
				log.Debug("garbage collector target", "percent", p, "live-bytes", sample[0].Value.Uint64(), "budget-bytes", budget)
				set = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
