package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

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
	if keep {
		fmt.Fprintf(out, "\nthe testbed stays up: isthmus-testbed status | exec NODE CMD | vtysh NODE CMD | down\n")
	}
	if failed > 0 {
		return fmt.Errorf("%d scenarios failed", failed)
	}
	return nil
}
