package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/isthmus-net/isthmus/cni/plugin"
)

// TelemetryPaths are what the demo streams from a host: its BGP sessions
// and the counters of its interfaces.
var TelemetryPaths = []string{
	"/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp/neighbors/neighbor[neighbor-address=*]/state/session-state",
	"/interfaces/interface[name=*]/state/counters",
}

// TelemetryOptions say what ShowTelemetry streams.
type TelemetryOptions struct {
	// Host is the node whose isthmusd is subscribed to.
	Host string
	// Peer is the host of the pod that Host's pod pings.
	Peer string
	// Tenant is the pods' VRF.
	Tenant string
	// Duration is how long the subscription runs.
	Duration time.Duration
	// Interval is the sample interval; 0 means 2s.
	Interval time.Duration
	// KeepPods leaves the two pods in place afterwards, for a kept
	// testbed; Down removes them with the run.
	KeepPods bool
}

// ShowTelemetry adds a pod on o.Host and one on o.Peer, keeps a ping flow
// between them going, streams TelemetryPaths from isthmusd on o.Host with
// gnmic subscribe (sample mode) for o.Duration, and writes what arrived to
// w as a table, one row per sample and interface. It returns the pods,
// which are gone again unless o.KeepPods is set.
func (tb *Testbed) ShowTelemetry(ctx context.Context, w io.Writer, o TelemetryOptions) ([]*Pod, error) {
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	if err := tb.requireDaemons(ctx); err != nil {
		return nil, err
	}
	gnmic, err := tb.needGnmic()
	if err != nil {
		return nil, err
	}
	target, err := tb.GNMIAddr(o.Host)
	if err != nil {
		return nil, err
	}
	pods, cleanup, err := tb.addPods(ctx, o.Host+"/"+o.Tenant+"/tm", o.Peer+"/"+o.Tenant+"/tm")
	if err != nil {
		return nil, err
	}
	if !o.KeepPods {
		defer cleanup()
	}
	if err := tb.waitPodRoutes(ctx, pods...); err != nil {
		return pods, err
	}
	if err := tb.waitPodReach(ctx, pods[0], pods[1].Address.String()); err != nil {
		return pods, err
	}
	flowCtx, stopFlow := context.WithCancel(ctx)
	defer stopFlow()
	const every = 20 * time.Millisecond
	go func() {
		// The flow only makes the counters move; its result does not matter.
		_, _ = tb.PodPing(flowCtx, pods[0], PingOptions{To: pods[1].Address.String(), Count: int(o.Duration / every), Interval: every})
	}()
	args := []string{"subscribe", "--mode", "stream", "--stream-mode", "sample", "--sample-interval", o.Interval.String(), "--format", "event"}
	for _, p := range TelemetryPaths {
		args = append(args, "--path", p)
	}
	subCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	fmt.Fprintf(w, "  gnmic -a %s subscribe --stream-mode sample --sample-interval %s, for %s, while %s pings %s every %s:\n",
		target, o.Interval, o.Duration, PodEndpoint(pods[0]), PodEndpoint(pods[1]), every)
	for _, p := range TelemetryPaths {
		fmt.Fprintf(w, "    --path '%s'\n", p)
	}
	fmt.Fprintf(w, "  (the testbed's isthmusd publishes forwarding counters every second: --state-interval 1s)\n\n")
	out, err := tb.Gnmic(subCtx, gnmic, o.Host, target, args...)
	if err != nil && !errors.Is(subCtx.Err(), context.DeadlineExceeded) {
		return pods, fmt.Errorf("subscribe on %s: %w", o.Host, err)
	}
	samples, err := ParseGnmicEvents(out)
	if err != nil {
		return pods, err
	}
	podOf := map[string]string{}
	for _, p := range pods {
		if p.Host == o.Host {
			podOf[plugin.HostIfName(p.Netns, "eth0")] = p.Host + "/" + p.Tenant + "/" + p.Name
		}
	}
	return pods, WriteTelemetry(w, samples, podOf)
}
