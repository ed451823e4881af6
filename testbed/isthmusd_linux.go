package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// GNMIPort is the port isthmusd serves gNMI on in the testbed.
const GNMIPort = 9339

// IsthmusdOptions tune StartIsthmusd.
type IsthmusdOptions struct {
	// Binary is the isthmusd executable; empty means the run's Binaries.
	Binary string
	// Args are extra flags, after the ones the testbed sets.
	Args []string
}

// Isthmusd is isthmusd running in a host node: gNMI without TLS on the
// node's underlay address, its store, bpffs pins and CNI socket in the run
// directory, so that a restart finds them again and Down removes them.
type Isthmusd struct {
	*Process
	// GNMI is the address:port of its gNMI service, reachable from the
	// topology's nodes.
	GNMI string
	// DataDir holds its store.
	DataDir string
	// BPFFS is where its dataplane pins eBPF state (a bpffs mount).
	BPFFS string
	// CNISocket is its local API for isthmus-cni.
	CNISocket string

	tb   *Testbed
	argv []string
}

// StartIsthmusd starts isthmusd in node and waits until its gNMI port
// accepts connections from inside the node. It enters only the node's
// network namespace, so the dataplane's bpffs pins outlive a restart.
func (tb *Testbed) StartIsthmusd(ctx context.Context, node string, o IsthmusdOptions) (*Isthmusd, error) {
	if o.Binary == "" {
		o.Binary = tb.Binaries().Isthmusd
	}
	if o.Binary == "" {
		return nil, fmt.Errorf("start isthmusd in %s: %w: no isthmusd binary", node, ErrNotAvailable)
	}
	underlay, err := tb.topo.UnderlayAddr(node)
	if err != nil {
		return nil, fmt.Errorf("start isthmusd in %s: %w", node, err)
	}
	dir := filepath.Join(tb.dir, "isthmusd", node)
	d := &Isthmusd{
		GNMI:      net.JoinHostPort(underlay.String(), fmt.Sprint(GNMIPort)),
		DataDir:   filepath.Join(dir, "data"),
		BPFFS:     filepath.Join(tb.dir, "bpf", node),
		CNISocket: tb.CNISocket(node),
		tb:        tb,
	}
	if err := os.MkdirAll(d.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("start isthmusd in %s: %w", node, err)
	}
	d.argv = append([]string{o.Binary,
		"--data-dir", d.DataDir,
		"--gnmi-address", d.GNMI,
		"--insecure",
		"--bpffs", d.BPFFS,
		"--cni-socket", d.CNISocket,
		"--target", node,
		"--log-level", "debug",
		"--state-interval", "1s",
	}, o.Args...)
	if err := d.start(ctx, node); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Isthmusd) start(ctx context.Context, node string) error {
	p, err := d.tb.StartWith(ctx, node, "isthmusd", StartOptions{HostMounts: true}, d.argv...)
	if err != nil {
		return err
	}
	d.Process = p
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = poll(waitCtx, func() (bool, error) {
		select {
		case <-p.Done():
			return false, fmt.Errorf("isthmusd exited: %v", p.Err())
		default:
		}
		c, err := d.tb.Dial(waitCtx, node, "tcp", d.GNMI)
		if err != nil {
			return false, err
		}
		return true, c.Close()
	})
	if err != nil {
		return errors.Join(fmt.Errorf("start isthmusd in %s: gnmi on %s: %w; log:\n%s", node, d.GNMI, err, p.Tail(20)), p.Stop(ctx))
	}
	return nil
}

// Restart stops isthmusd (SIGTERM, or SIGKILL when crash is set) and starts
// it again with the same flags and state.
func (d *Isthmusd) Restart(ctx context.Context, crash bool) error {
	stop := d.Process.Stop
	if crash {
		stop = d.Process.Kill
	}
	if err := stop(ctx); err != nil {
		return fmt.Errorf("restart isthmusd in %s: %w", d.Node, err)
	}
	return d.start(ctx, d.Node)
}

// Dial opens a connection from inside node; the socket stays in the node's
// namespace, so the caller can use it from any goroutine.
func (tb *Testbed) Dial(ctx context.Context, node, network, addr string) (net.Conn, error) {
	if _, ok := tb.topo.Node(node); !ok {
		return nil, fmt.Errorf("dial from %q: unknown node", node)
	}
	var c net.Conn
	err := ns.WithNetNSPath(filepath.Join(netnsDir, tb.Namespace(node)), func(ns.NetNS) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, node, err)
	}
	return c, nil
}

// Gnmic runs a gnmic command from inside node against target (address:port)
// without TLS, and returns its output.
func (tb *Testbed) Gnmic(ctx context.Context, gnmic, node, target string, args ...string) ([]byte, error) {
	argv := slices.Concat([]string{gnmic, "-a", target, "--insecure", "--timeout", "10s"}, args)
	return tb.Exec(ctx, node, argv...)
}
