package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// matrix answers probe requests from stdin, one line each: probes
// "tcp|udp:ADDR:PORT" separated by spaces, all sent at once; it writes one
// line per request with a result per probe, in order: what the other end
// answered (an identity listener's "namespace/name"), "-" when nothing
// answered within the timeout (a TCP connection never established, or a UDP
// probe sent three times unanswered), "!refused", or "!" and the error.
// It ends at the end of its input.
func matrix(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 500*time.Millisecond, "how long a probe waits for an answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		probes := strings.Fields(sc.Text())
		results := make([]string, len(probes))
		var wg sync.WaitGroup
		for i, p := range probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = probeOnce(p, *timeout)
			}()
		}
		wg.Wait()
		if _, err := fmt.Fprintln(out, strings.Join(results, " ")); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read probes: %w", err)
	}
	return nil
}

// probeOnce sends one probe and says what answered.
func probeOnce(spec string, timeout time.Duration) string {
	proto, addr, ok := strings.Cut(spec, ":")
	if !ok || (proto != "tcp" && proto != "udp") {
		return "!bad-probe:" + spec
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		answer []byte
		err    error
	)
	if proto == "tcp" {
		answer, err = probeTCP(ctx, addr)
	} else {
		answer, err = probeUDP(ctx, addr)
	}
	var ne net.Error
	switch {
	case err == nil && len(answer) > 0:
		return strings.Join(strings.Fields(string(answer)), "_")
	case err == nil:
		return "!empty-answer"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "-"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "!refused"
	}
	return "!" + strings.Join(strings.Fields(err.Error()), "_")
}

func probeTCP(ctx context.Context, addr string) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	if err := c.SetReadDeadline(dl); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(c, 512))
}

// probeUDP sends a datagram up to three times, a third of the timeout
// apart, and returns the first answer.
func probeUDP(ctx context.Context, addr string) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	end, _ := ctx.Deadline()
	step := time.Until(end) / 3
	buf := make([]byte, 512)
	for {
		if _, err := c.Write([]byte("probe")); err != nil {
			return nil, err
		}
		wait := time.Now().Add(step)
		if wait.After(end) {
			wait = end
		}
		if err := c.SetReadDeadline(wait); err != nil {
			return nil, err
		}
		n, err := c.Read(buf)
		if err == nil {
			return buf[:n], nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !time.Now().Before(end) {
			return nil, err
		}
	}
}

// matrixMain is the matrix command on the process's stdin and stdout.
func matrixMain(args []string) error { return matrix(args, os.Stdin, os.Stdout) }
