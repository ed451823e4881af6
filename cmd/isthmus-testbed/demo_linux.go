package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/isthmus-net/isthmus/testbed"
)

// demo brings the testbed up, runs every scenario, prints a summary and
// tears the testbed down unless keep is set.
func demo(ctx context.Context, log *slog.Logger, out io.Writer, root, file string, bins testbed.Binaries, keep bool) (err error) {
	if err := up(ctx, log, out, root, file, bins); err != nil {
		return err
	}
	if !keep {
		defer func() {
			err = errors.Join(err, down(context.WithoutCancel(ctx), log, out, root, false))
		}()
	}
	tb, err := current(root, log)
	if err != nil {
		return err
	}
	type result struct{ name, title, verdict string }
	var results []result
	failed := 0
	for _, s := range testbed.Scenarios() {
		var buf bytes.Buffer
		fmt.Fprintf(out, "\n== scenario %s: %s\n", s.Name, s.Title)
		runErr := s.Run(ctx, tb, &buf)
		_, _ = out.Write(buf.Bytes())
		verdict := "passed"
		switch {
		case errors.Is(runErr, testbed.ErrNotAvailable):
			verdict = "not yet available"
		case runErr != nil:
			verdict = "FAILED: " + runErr.Error()
			failed++
		}
		if runErr != nil && verdict == "not yet available" {
			fmt.Fprintf(out, "   %v\n", runErr)
		} else {
			fmt.Fprintf(out, "   %s\n", verdict)
		}
		results = append(results, result{s.Name, s.Title, verdict})
	}
	fmt.Fprintf(out, "\nsummary\n")
	for _, r := range results {
		fmt.Fprintf(out, "  %-9s %-20s %s\n", r.name, r.verdict, r.title)
	}
	fmt.Fprintf(out, "\n== telemetry\n")
	if err := tb.ShowTelemetry(ctx, out, "c1", "d1", "red", 4*time.Second); err != nil {
		fmt.Fprintf(out, "   %v\n", err)
	}
	if keep {
		printPokeHelp(out, tb)
	}
	if failed > 0 {
		return fmt.Errorf("%d scenarios failed", failed)
	}
	return nil
}

// printPokeHelp tells how to reach the running testbed.
func printPokeHelp(out io.Writer, tb *testbed.Testbed) {
	gnmic := tb.Binaries().Gnmic
	if gnmic == "" {
		gnmic = "gnmic"
	}
	c1, _ := tb.GNMIAddr("c1") // the mission topology has c1
	bgp := "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp/neighbors"
	fmt.Fprintf(out, `
the testbed stays up. Every address lives inside its namespaces, so run
gnmic from a node (gNMI without TLS on each host's underlay address, :%d):

  isthmus-testbed exec c1 %[2]s -a %[3]s --insecure capabilities
  isthmus-testbed exec c1 %[2]s -a %[3]s --insecure get --path '/network-instances/network-instance[name=red]' -e json_ietf
  isthmus-testbed exec c1 %[2]s -a %[3]s --insecure get --path '%[4]s' -e json_ietf
  isthmus-testbed exec c1 %[2]s -a %[3]s --insecure subscribe --path '/interfaces/interface[name=*]/state/counters' --stream-mode sample --sample-interval 2s
  isthmus-testbed vtysh dcgw 'show bgp ipv4 vpn'
  isthmus-testbed status
  isthmus-testbed down
`, testbed.GNMIPort, gnmic, c1, bgp)
}
