package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
)

// telemetryTime is how long the demo streams telemetry: long enough for
// isthmusd (started with --state-interval 1s) to publish its dataplane
// counters several times.
const telemetryTime = 6 * time.Second

// demo brings the testbed up, runs every scenario, streams some telemetry,
// prints a summary and tears the testbed down unless keep is set.
func demo(ctx context.Context, log *slog.Logger, out io.Writer, root, file string, bins testbed.Binaries, keep bool) (err error) {
	fmt.Fprintf(out, "== bringing the testbed up\n")
	if err := up(ctx, log, out, root, file, bins); err != nil {
		return err
	}
	if !keep {
		defer func() {
			fmt.Fprintf(out, "\n== tearing down\n")
			err = errors.Join(err, down(context.WithoutCancel(ctx), log, out, root, false))
		}()
	}
	tb, err := current(root, log)
	if err != nil {
		return err
	}
	var outcomes []testbed.Outcome
	for _, s := range testbed.Scenarios() {
		fmt.Fprintf(out, "\n== scenario %s: %s\n", s.Name, s.Title)
		r := testbed.NewReport(out)
		start := time.Now()
		runErr := s.Run(ctx, tb, r)
		o := testbed.Outcome{Scenario: s, Report: r, Err: runErr, Took: time.Since(start)}
		outcomes = append(outcomes, o)
		if runErr != nil {
			fmt.Fprintf(out, "  %s: %v\n", o.Verdict(), runErr)
		} else {
			fmt.Fprintf(out, "  %s\n", o.Verdict())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	fmt.Fprintf(out, "\n== telemetry: gnmic subscribe to isthmusd on c1\n")
	pods, telErr := tb.ShowTelemetry(ctx, out, testbed.TelemetryOptions{
		Host: "c1", Peer: "d1", Tenant: "red", Duration: telemetryTime, KeepPods: keep,
	})
	if telErr != nil {
		fmt.Fprintf(out, "  telemetry: %v\n", telErr)
	}

	passed, failed := 0, 0
	for _, o := range outcomes {
		switch o.Verdict() {
		case "pass":
			passed++
		case "FAIL":
			failed++
		}
	}
	fmt.Fprintf(out, "\n== SUMMARY: %d of %d scenarios passed (topology %s, run %s, %s)\n\n",
		passed, len(outcomes), tb.Topology().Name, strings.TrimSuffix(tb.Prefix(), "-"), time.Now().Format(time.DateTime))
	if err := testbed.WriteSummary(out, outcomes); err != nil {
		return err
	}
	if keep {
		printPokeHelp(out, tb, pods)
	}
	if failed > 0 {
		return fmt.Errorf("%d scenarios failed", failed)
	}
	return nil
}

// printPokeHelp tells how to reach the running testbed, with commands that
// can be pasted as they are.
func printPokeHelp(out io.Writer, tb *testbed.Testbed, pods []*testbed.Pod) {
	self, err := os.Executable()
	if err != nil {
		self = "isthmus-testbed"
	}
	gnmic := tb.Binaries().Gnmic
	if gnmic == "" {
		gnmic = "gnmic"
	}
	c1, _ := tb.GNMIAddr("c1") // the mission topology has c1 and d1
	d1, _ := tb.GNMIAddr("d1")
	bgp := "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp/neighbors"
	fmt.Fprintf(out, `
== the testbed stays up (run %[1]s)

Every address lives inside the testbed's namespaces, so run gnmic inside a
node's namespace. isthmusd serves gNMI without TLS and without users on
each host's underlay address, port %[2]d (c1 %[3]s, d1 %[4]s, …); from c1
every host is reachable.

  G="ip netns exec %[5]s %[6]s -a %[3]s --insecure"
  $G capabilities
  $G get --path '/network-instances/network-instance[name=red]' -e json_ietf --format flat
  $G get --path '%[7]s' --type state
  $G subscribe --path '/interfaces/interface[name=*]/state/counters' --stream-mode sample --sample-interval 1s
  $G subscribe --path '%[7]s/neighbor[neighbor-address=*]/state/session-state' --stream-mode on-change
`, strings.TrimSuffix(tb.Prefix(), "-"), testbed.GNMIPort, c1, d1, tb.Namespace("c1"), gnmic, bgp)
	if len(pods) == 2 {
		fmt.Fprintf(out, `
Two pods stay up in vrf %s, %s on %s and %s on %s; ping across the
tunnel and watch the counters above move (the testbed's isthmusd publishes them every second):

  ip netns exec %s ping -c 3 %s
`, pods[0].Tenant, pods[0].Address, pods[0].Host, pods[1].Address, pods[1].Host, pods[0].Netns, pods[1].Address)
	}
	fmt.Fprintf(out, `
The data-center gateway's FRR, the nodes, the scenarios:

  %[1]s vtysh dcgw 'show bgp ipv4 vpn'
  %[1]s exec c1 ip -d link
  %[1]s status
  %[1]s run a                  # or underlay, b … f

Tear it down:

  %[1]s down
`, self)
}
