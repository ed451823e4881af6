package k8s

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/isthmus-net/isthmus/kube/netpoltest"
)

// prober is a `kubectl exec -i` session running `podserver matrix` in
// one pod of the truth table: each request is a line of probes sent from
// inside the pod at once, and the answer a line of results. The session
// lasts the whole table, so a round costs the probes' own time rather than
// a kubectl start per pod.
type prober struct {
	pod   *corev1.Pod
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	// stderr holds kubectl's and podserver's complaints, for errors.
	stderr *lockedBuffer
	done   chan struct{}
}

// lockedBuffer is a bytes.Buffer the exec package writes to while
// errors read it.
type lockedBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// startProber opens the session in pod, from inside the control-plane
// node as Kubectl runs. The session ends when ctx does or close is
// called.
func (c *Cluster) startProber(ctx context.Context, pod *corev1.Pod, timeout time.Duration) (*prober, error) {
	argv := []string{"netns", "exec", c.tb.Namespace(ControlPlaneNode),
		filepath.Join(c.bins, "kubectl"), "--kubeconfig", c.Kubeconfig,
		"-n", pod.Namespace, "exec", "-i", pod.Name, "--",
		"/usr/local/bin/podserver", "matrix", "-timeout", timeout.String()}
	cmd := exec.CommandContext(ctx, "ip", argv...)
	p := &prober{pod: pod, cmd: cmd, lines: make(chan string, 1), stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("probe from %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("probe from %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kubectl exec in %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return p, nil
}

// round sends probes and returns one result per probe, in order.
func (p *prober) round(ctx context.Context, probes []string) ([]string, error) {
	if _, err := io.WriteString(p.stdin, strings.Join(probes, " ")+"\n"); err != nil {
		return nil, fmt.Errorf("send probes to %s/%s: %w: %s", p.pod.Namespace, p.pod.Name, err, p.stderr)
	}
	select {
	case line := <-p.lines:
		res := strings.Fields(line)
		if len(res) != len(probes) {
			return nil, fmt.Errorf("probes from %s/%s: %d results for %d probes: %q", p.pod.Namespace, p.pod.Name, len(res), len(probes), line)
		}
		return res, nil
	case <-p.done:
		return nil, fmt.Errorf("probe session in %s/%s ended: %s", p.pod.Namespace, p.pod.Name, p.stderr)
	case <-ctx.Done():
		return nil, fmt.Errorf("probes from %s/%s: %w", p.pod.Namespace, p.pod.Name, ctx.Err())
	}
}

// close ends the session: podserver exits at the end of its input, and
// kubectl with it.
func (p *prober) close() error {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
	}
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("probe session in %s/%s: %w: %s", p.pod.Namespace, p.pod.Name, err, p.stderr)
	}
	return nil
}

// truthProbe is one probe of the table: its key and what the source pod
// sends.
type truthProbe struct {
	key, spec string
	// answer is the destination pod's identity.
	answer string
}

// probeRound sends every probe of the table at once (each pod's from
// inside it) and returns each probe's outcome by key: the answering
// identity, "-" for none, or "!" and what went wrong.
func probeRound(ctx context.Context, probers []*prober, plan [][]truthProbe) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := map[string]string{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []string
	)
	for i, p := range probers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			specs := make([]string, len(plan[i]))
			for j, tp := range plan[i] {
				specs[j] = tp.spec
			}
			res, err := p.round(ctx, specs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
				return
			}
			for j, tp := range plan[i] {
				out[tp.key] = res[j]
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("probe round: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// truthPlan lists, for each pod of f in order, the probes it sends: every
// other pod, every probe of the table.
func truthPlan(f *netpoltest.Fixture) [][]truthProbe {
	plan := make([][]truthProbe, len(f.Pods))
	for i, src := range f.Pods {
		for _, dst := range f.Pods {
			if src == dst {
				continue
			}
			for _, pr := range netpoltest.Probes {
				plan[i] = append(plan[i], truthProbe{
					key:    netpoltest.Key(src, dst, pr),
					spec:   fmt.Sprintf("%s:%s:%d", strings.ToLower(string(pr.Proto)), dst.Status.PodIP, pr.Port),
					answer: dst.Namespace + "/" + dst.Name,
				})
			}
		}
	}
	return plan
}

// truthMismatches lists the probes whose outcome is not what want says:
// an allowed probe must be answered by its destination pod, a denied one
// by nobody.
func truthMismatches(plan [][]truthProbe, want map[string]bool, got map[string]string) []string {
	var lines []string
	for _, probes := range plan {
		for _, tp := range probes {
			g := got[tp.key]
			switch {
			case want[tp.key] && g == tp.answer, !want[tp.key] && g == "-":
				continue
			case g == tp.answer:
				g = "answered"
			case g == "-":
				g = "no answer"
			}
			lines = append(lines, fmt.Sprintf("%s: %s, want %s", tp.key, g, map[bool]string{true: "answered", false: "no answer"}[want[tp.key]]))
		}
	}
	return lines
}
