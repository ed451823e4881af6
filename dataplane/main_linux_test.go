package dataplane

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Environment of a loader process started by TestRestartKeepsForwarding.
const (
	loaderEnv = "ISTHMUS_TEST_LOADER" // hostConfig as JSON
	reloadEnv = "ISTHMUS_TEST_RELOAD" // "1": act as an upgraded binary
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(loaderEnv); cfg != "" {
		if err := runLoader(cfg, os.Getenv(reloadEnv) == "1"); err != nil {
			fmt.Fprintln(os.Stderr, "loader:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runLoader is the body of a loader process: adopt the pinned state,
// reconcile it with the configuration, exit. With reload it first forgets
// the pinned programs, as a binary with a new forwarder would, so the links
// move to freshly loaded programs.
func runLoader(cfgJSON string, reload bool) error {
	var c hostConfig
	if err := json.Unmarshal([]byte(cfgJSON), &c); err != nil {
		return err
	}
	if reload {
		olds, _ := filepath.Glob(filepath.Join(c.Dir, "progs-*"))
		for _, o := range olds {
			os.RemoveAll(o)
		}
	}
	d, err := Open(Config{BPFFS: c.Dir, Logger: quiet})
	if err != nil {
		return err
	}
	defer d.Close()
	if !reload && !d.Adopted() {
		return fmt.Errorf("did not adopt the pinned programs")
	}
	return c.apply(d)
}

func TestRestartKeepsForwarding(t *testing.T) {
	for _, encap := range []Encap{EncapMPLSoUDP, EncapMPLSoMPLS} {
		t.Run(encap.String(), func(t *testing.T) { testRestart(t, encap) })
	}
}

// testRestart runs ping -i 0.01 between two pods while loader processes
// adopt (and once replace) the pinned programs of both hosts.
func testRestart(t *testing.T, encap Encap) {
	o := newOverlay(t, encap)
	// This process was the first loader; it lets go of everything now.
	o.a.d.Close()
	o.b.d.Close()
	src, dst := o.a.pods["red"], o.b.pods["red"]
	var out strings.Builder
	ping := src.ns.cmd("ping", "-i", "0.01", "-c", "400", "-W", "1", dst.addr.String())
	ping.Stdout, ping.Stderr = &out, &out
	if err := ping.Start(); err != nil {
		t.Fatalf("start ping: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	for _, step := range []struct {
		h      *testHost
		reload bool
	}{{o.a, false}, {o.b, false}, {o.a, true}, {o.b, true}, {o.a, false}} {
		cfg, err := json.Marshal(step.h.cfg)
		must(t, err)
		c := step.h.ns.cmd(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), loaderEnv+"="+string(cfg))
		if step.reload {
			c.Env = append(c.Env, reloadEnv+"=1")
		}
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("loader process (reload %v): %v\n%s", step.reload, err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	err := ping.Wait()
	t.Logf("%s", lastLines(out.String(), 3))
	if err != nil || !strings.Contains(out.String(), " 0% packet loss") {
		t.Fatalf("ping lost packets across loader restarts: %v", err)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
