package testbed

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// listenIn opens a TCP listener inside a namespace; the socket stays there.
func listenIn(nsPath, addr string) (net.Listener, error) {
	var l net.Listener
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s in %s: %w", addr, nsPath, err)
	}
	return l, nil
}

// dialIn opens a TCP connection from inside a namespace.
func dialIn(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, nsPath, err)
	}
	return c, nil
}

// PodServer is a TCP service in a pod: it answers each connection with the
// pod's identity, then echoes a SHA-256 of whatever it reads, which proves
// both who answered and that a transfer arrived intact.
type PodServer struct {
	l    net.Listener
	done chan struct{}
}

// ServeIdentity starts a PodServer on port in pod p that identifies itself
// as "<host>/<tenant>/<pod>".
func (tb *Testbed) ServeIdentity(p *Pod, port int) (*PodServer, error) {
	l, err := listenIn(filepath.Join(netnsDir, p.Netns), fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, err
	}
	s := &PodServer{l: l, done: make(chan struct{})}
	id := p.Host + "/" + p.Tenant + "/" + p.Name
	go func() {
		defer close(s.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			go func() {
				defer c.Close()
				if _, err := fmt.Fprintf(c, "%-32s", id); err != nil {
					return
				}
				h := sha256.New()
				if _, err := io.Copy(h, c); err != nil {
					return
				}
				_, _ = c.Write(h.Sum(nil)) // the client checks what arrives
			}()
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *PodServer) Close() error {
	err := s.l.Close()
	<-s.done
	return err
}

// TCPResult is what a TCP exchange with a PodServer showed.
type TCPResult struct {
	// Identity is who answered ("d1/red/web").
	Identity string
	// Bytes were sent and acknowledged by their checksum.
	Bytes int64
	// Duration of the transfer, from the first byte sent to the checksum
	// received.
	Duration time.Duration
}

// Mbps is the transfer's throughput in megabits per second.
func (r TCPResult) Mbps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Duration.Seconds() / 1e6
}

// TCPExchange connects from pod p to addr:port, reads the server's
// identity, sends size bytes and checks the checksum that comes back.
func (tb *Testbed) TCPExchange(ctx context.Context, p *Pod, addr string, port, size int) (TCPResult, error) {
	return tcpProbe(ctx, p, addr, port, int64(size), 0)
}

// TCPThroughput connects from pod p to addr:port, sends as fast as TCP
// allows for d and checks the checksum that comes back: a bulk transfer
// whose rate is the path's throughput.
func (tb *Testbed) TCPThroughput(ctx context.Context, p *Pod, addr string, port int, d time.Duration) (TCPResult, error) {
	return tcpProbe(ctx, p, addr, port, 0, d)
}

// probeChunk is what tcpProbe writes at a time.
const probeChunk = 128 << 10

// tcpProbe sends size bytes, or when size is 0 sends for d, and checks the
// server's identity and checksum.
func tcpProbe(ctx context.Context, p *Pod, addr string, port int, size int64, d time.Duration) (TCPResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second+d)
	defer cancel()
	c, err := dialIn(ctx, filepath.Join(netnsDir, p.Netns), net.JoinHostPort(addr, fmt.Sprint(port)))
	if err != nil {
		return TCPResult{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl) // a deadline error surfaces on the reads below
	}
	id := make([]byte, 32)
	if _, err := io.ReadFull(c, id); err != nil {
		return TCPResult{}, fmt.Errorf("read identity from %s: %w", addr, err)
	}
	chunk := make([]byte, probeChunk)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	h := sha256.New()
	start := time.Now()
	var sent int64
	for (size > 0 && sent < size) || (size == 0 && time.Since(start) < d) {
		b := chunk
		if size > 0 {
			b = chunk[:min(int64(len(chunk)), size-sent)]
		}
		if _, err := c.Write(b); err != nil {
			return TCPResult{}, fmt.Errorf("send to %s: %w", addr, err)
		}
		h.Write(b) // a hash never fails to write
		sent += int64(len(b))
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return TCPResult{}, fmt.Errorf("close write to %s: %w", addr, err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, sum); err != nil {
		return TCPResult{}, fmt.Errorf("read checksum from %s: %w", addr, err)
	}
	if string(sum) != string(h.Sum(nil)) {
		return TCPResult{}, errors.New("transfer corrupted: checksum differs")
	}
	return TCPResult{Identity: string(trimRight(id)), Bytes: sent, Duration: time.Since(start)}, nil
}

func trimRight(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}
