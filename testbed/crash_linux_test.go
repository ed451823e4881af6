package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashEnv makes the test binary act as a builder that stops at a given
// point and waits to be killed: "<run dir>|<prefix>|<steps or 'full'>".
const crashEnv = "ISTHMUS_TESTBED_CRASH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashEnv); spec != "" {
		os.Exit(crashChild(spec))
	}
	os.Exit(m.Run())
}

// crashChild builds the mission topology and prints "ready" either after
// the given number of steps or, for "full", once everything is up with FRR
// on dcgw and a sleeper on c1; then it hangs until killed.
func crashChild(spec string) int {
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "bad crash spec", spec)
		return 2
	}
	dir, prefix, point := parts[0], parts[1], parts[2]
	after, _ := strconv.Atoi(point) // 0 for "full"
	hang := func() {
		fmt.Println("ready")
		time.Sleep(time.Hour)
	}
	ctx := context.Background()
	tb, err := Up(ctx, Mission(), Options{Dir: dir, Prefix: prefix, Progress: func(done, _ int, _ Step) {
		if done == after {
			hang()
		}
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := tb.StartFRR(ctx, "dcgw"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := tb.Start(ctx, "c1", "sleeper", "sleep", "600"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	hang()
	return 0
}

// TestDownAfterCrash kills a builder mid-build and after it started
// daemons, then checks that Down from the state file leaves nothing.
func TestDownAfterCrash(t *testing.T) {
	RequirePrivileges(t, frrBGPd, frrZebra, vtyshBin)
	for _, point := range []string{"9", "40", "full"} {
		t.Run("after_"+point, func(t *testing.T) {
			prefix := NewPrefix()
			dir := filepath.Join(DefaultRoot, strings.TrimSuffix(prefix, "-"))
			t.Cleanup(func() {
				_ = Sweep(context.Background(), nil, prefix) // a safety net; the test checks Down
				_ = os.RemoveAll(dir)                        // logs only
			})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			child.Env = append(os.Environ(), crashEnv+"="+dir+"|"+prefix+"|"+point)
			var stderr bytes.Buffer
			child.Stderr = &stderr
			stdout, err := child.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if sc.Text() == "ready" {
						ready <- true
						return
					}
				}
				ready <- false
			}()
			select {
			case ok := <-ready:
				if !ok {
					_ = child.Wait()
					t.Fatalf("builder exited before it was ready: %s", stderr.String())
				}
			case <-ctx.Done():
				t.Fatalf("builder not ready: %s", stderr.String())
			}
			if err := child.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = child.Wait() // killed: the error only says so

			// A process started just before the kill may still be entering
			// its namespace; give the scan a moment to see all three.
			var left Leftovers
			err = poll(ctx, func() (bool, error) {
				var err error
				left, err = FindLeftovers(prefix)
				return point != "full" || len(left.PIDs) >= 3, err
			})
			if err != nil {
				t.Fatalf("leftovers %+v: %v", left, err)
			}
			if len(left.Namespaces) == 0 {
				t.Fatal("the crash left no namespace behind; the test proves nothing")
			}
			if point == "full" && len(left.PIDs) < 3 {
				t.Fatalf("want zebra, bgpd and the sleeper left running, got pids %v", left.PIDs)
			}
			st, err := ReadState(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := Down(ctx, nil, dir); err != nil {
				t.Fatal(err)
			}
			assertNoLeftovers(t, prefix)
			for _, p := range st.Processes {
				if alive(p.PID) {
					t.Errorf("%s (pid %d) still running", p.Name, p.PID)
				}
			}
		})
	}
}
