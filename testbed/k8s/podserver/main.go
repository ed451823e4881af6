// Command podserver is the workload of the testbed's Kubernetes scenarios,
// built into the podserver image (nothing can be pulled here).
//
//	podserver serve [-listen :8080] [-identity PORTS]
//	                                  HTTP: / names the pod and the caller,
//	                                  /healthz answers 200 (503 once /tmp/unready exists),
//	                                  /dial?addr=HOST:PORT reads a 32-byte TCP greeting from addr;
//	                                  on each of PORTS (comma-separated), TCP and UDP answer
//	                                  "namespace/name" ($POD_NAMESPACE)
//	podserver matrix [-timeout 500ms] reads lines of probes (tcp|udp:ADDR:PORT ...) from stdin,
//	                                  sends each line's at once, writes a line of what answered
//	podserver probe URL               exit 0 when GET URL answers 200 (exec probes)
//	podserver unready                 makes /healthz answer 503 from now on
//	podserver ready                   makes it answer 200 again
//
// The pod's name comes from $POD_NAME (the downward API), else the host name.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("podserver: want serve, matrix, probe, unready or ready")
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "matrix":
		err = matrixMain(os.Args[2:])
	case "probe":
		err = probe(os.Args[2:])
	case "unready":
		err = os.WriteFile("/tmp/unready", nil, 0o644)
	case "ready":
		err = os.Remove("/tmp/unready")
	default:
		err = fmt.Errorf("unknown command %q: want serve, matrix, probe, unready or ready", os.Args[1])
	}
	if err != nil {
		log.Fatalf("podserver: %v", err)
	}
}

func podName() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	n, _ := os.Hostname()
	return n
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "HTTP listen address")
	idPorts := fs.String("identity", "", "comma-separated ports answering the pod's identity over TCP and UDP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ports, err := parsePorts(*idPorts)
	if err != nil {
		return err
	}
	name := podName()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod %s from %s\n", name, r.RemoteAddr)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat("/tmp/unready"); err == nil {
			http.Error(w, "unready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		addr := r.URL.Query().Get("addr")
		if addr == "" {
			http.Error(w, "dial: want addr=HOST:PORT", http.StatusBadRequest)
			return
		}
		greeting, err := dial(r.Context(), addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "%s", greeting)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1+2*len(ports))
	if err := serveIdentity(ctx, ports, identity(), errc); err != nil {
		return err
	}
	go func() { errc <- fmt.Errorf("serve http %s: %w", *listen, srv.ListenAndServe()) }()
	log.Printf("podserver %s serving on %s", name, *listen)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("shut down: %w", err)
		}
		return nil
	}
}

// greeting is how much dial reads: the testbed's identity servers send
// their name padded to 32 bytes.
const greeting = 32

// dial connects to addr and returns the first greeting bytes it sends,
// within two seconds.
func dial(ctx context.Context, addr string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	if err := c.SetReadDeadline(dl); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	b := make([]byte, greeting)
	n, err := io.ReadFull(c, b)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("read from %s: %w", addr, err)
	}
	return b[:n], nil
}

func probe(args []string) error {
	if len(args) != 1 {
		return errors.New("probe: want one URL")
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s", args[0], resp.Status)
	}
	return nil
}
