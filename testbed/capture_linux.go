package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// capture is a tcpdump running in a node, writing a pcap in the run dir.
type capture struct {
	tb   *Testbed
	p    *Process
	file string
	done bool
}

// startCapture captures on iface in node, BGP excepted, until stop.
func (tb *Testbed) startCapture(ctx context.Context, node, iface string) (*capture, error) {
	file := filepath.Join(tb.dir, "logs", fmt.Sprintf("%s-%s-%d.pcap", node, iface, time.Now().UnixNano()))
	p, err := tb.Start(ctx, node, "tcpdump", "tcpdump", "-Z", "root", "--immediate-mode", "-i", iface, "-n", "-U", "-s", "128", "-w", file, "not", "tcp", "port", "179")
	if err != nil {
		return nil, err
	}
	c := &capture{tb: tb, p: p, file: file}
	err = poll(ctx, func() (bool, error) {
		fi, err := os.Stat(file)
		select {
		case <-p.Done():
			return false, fmt.Errorf("tcpdump exited: %s", p.Tail(5))
		default:
		}
		return err == nil && fi.Size() >= 24, nil
	})
	if err != nil {
		_ = p.Stop(ctx) // the wait error says more
		return nil, fmt.Errorf("start capture on %s %s: %w", node, iface, err)
	}
	time.Sleep(200 * time.Millisecond) // tcpdump writes its header before the socket sees packets
	return c, nil
}

// stop ends the capture and returns its IPv4 packets; stopping twice
// returns nothing the second time.
func (c *capture) stop(ctx context.Context) ([]Packet, error) {
	if c.done {
		return nil, nil
	}
	c.done = true
	// Let tcpdump drain what the kernel already handed it: wait until the
	// file stops growing.
	last := int64(-1)
	for range 50 {
		fi, err := os.Stat(c.file)
		if err != nil || fi.Size() == last {
			break
		}
		last = fi.Size()
		time.Sleep(200 * time.Millisecond)
	}
	if err := c.p.Stop(ctx); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(c.file)
	if err != nil {
		return nil, fmt.Errorf("read capture: %w", err)
	}
	pkts, _, err := ParsePcap(data)
	return pkts, err
}
