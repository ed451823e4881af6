package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// TelemetryPaths are what the demo streams from a host: its BGP sessions
// and the counters of its interfaces.
var TelemetryPaths = []string{
	"/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp/neighbors/neighbor[neighbor-address=*]/state/session-state",
	"/interfaces/interface[name=*]/state/counters",
}

// ShowTelemetry streams TelemetryPaths from isthmusd on host with gnmic
// subscribe (sample mode, every second) for d, while a pod on host pings a
// pod on peer so that the counters move, and writes what arrived to w.
func (tb *Testbed) ShowTelemetry(ctx context.Context, w io.Writer, host, peer, tenant string, d time.Duration) error {
	if err := tb.requireDaemons(ctx); err != nil {
		return err
	}
	gnmic, err := tb.needGnmic()
	if err != nil {
		return err
	}
	target, err := tb.GNMIAddr(host)
	if err != nil {
		return err
	}
	pods, cleanup, err := tb.addPods(ctx, host+"/"+tenant+"/tm", peer+"/"+tenant+"/tm")
	if err != nil {
		return err
	}
	defer cleanup()
	if err := tb.waitPodRoutes(ctx, pods...); err != nil {
		return err
	}
	flowCtx, stopFlow := context.WithCancel(ctx)
	defer stopFlow()
	go func() {
		// The flow only makes the counters move; its result does not matter.
		_, _ = tb.PodPing(flowCtx, pods[0], PingOptions{To: pods[1].Address.String(), Count: int(d / (20 * time.Millisecond)), Interval: 20 * time.Millisecond})
	}()
	args := []string{"subscribe", "--mode", "stream", "--stream-mode", "sample", "--sample-interval", "1s", "--format", "flat"}
	for _, p := range TelemetryPaths {
		args = append(args, "--path", p)
	}
	subCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	fmt.Fprintf(w, "  gnmic -a %s subscribe (sample, 1s) for %s, while %s/%s pings %s/%s:\n", target, d, host, tenant, peer, tenant)
	out, err := tb.Gnmic(subCtx, gnmic, host, target, args...)
	if _, werr := w.Write(out); werr != nil {
		return fmt.Errorf("write telemetry: %w", werr)
	}
	if err != nil && !errors.Is(subCtx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("subscribe on %s: %w", host, err)
	}
	return nil
}
