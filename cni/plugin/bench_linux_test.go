package plugin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
)

// execAdd runs the plugin binary for one ADD, as a runtime would, in the
// host namespace, and returns how long it took.
func (e *env) execAdd(bin, containerID string, pod ns.NetNS, conf []byte) (time.Duration, error) {
	cmd := exec.Command(filepath.Join(bin, "isthmus-cni"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", "CNI_CONTAINERID="+containerID, "CNI_NETNS="+pod.Path(),
		"CNI_IFNAME=eth0", "CNI_PATH="+bin, "CNI_ARGS=K8S_POD_NAMESPACE=bench;K8S_POD_NAME="+containerID)
	cmd.Stdin = bytes.NewReader(conf)
	var out bytes.Buffer
	cmd.Stdout = &out
	var took time.Duration
	var runErr error
	if err := e.host.Do(func(ns.NetNS) error {
		start := time.Now()
		runErr = cmd.Run()
		took = time.Since(start)
		return nil
	}); err != nil {
		return 0, err
	}
	if runErr != nil {
		return 0, fmt.Errorf("add %s: %v: %s", containerID, runErr, out.String())
	}
	return took, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkAdd measures one ADD at a time through the plugin binary (exec,
// veth, daemon round trip with allocation and commit, pod setup) on a node
// that already has a given number of pods; each ADD is followed by an
// untimed DEL, so the node keeps its size. Creating the pod's namespace is
// not timed. The existing pods are recorded through the daemon's API only
// (no namespaces): what grows with them is the configuration tree.
func BenchmarkAdd(b *testing.B) {
	for _, existing := range []int{0, 100} {
		b.Run(fmt.Sprintf("pods=%d", existing), func(b *testing.B) {
			e := newEnv(b, daemon.Config{})
			e.d.AddVRF("red", "65000:1", "10.128.0.0/16")
			c, err := api.NewClient(e.socket)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for i := range existing {
				_, err := c.Add(context.Background(), &api.AddRequest{
					AttachmentID: api.AttachmentID{ContainerID: fmt.Sprintf("old-%d", i), IfName: "eth0"},
					Network:      "red", HostIfName: HostIfName(fmt.Sprintf("old-%d", i), "eth0"),
					HostMAC: "02:00:00:00:00:01", PodMAC: "02:00:00:00:00:02",
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			bin := buildBinaries(b)
			conf := e.conf("red", nil)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				pod := newNS(b)
				id := fmt.Sprintf("bench-%d", i)
				b.StartTimer()
				took, err := e.execAdd(bin, id, pod, conf)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				lat = append(lat, took)
				if err := e.del("red", id, pod.Path()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

// BenchmarkAttach100 measures attaching 100 pods with 8 ADDs in flight at
// a time, as a node does when a deployment scales up.
func BenchmarkAttach100(b *testing.B) {
	const pods, parallel = 100, 8
	e := newEnv(b, daemon.Config{})
	e.d.AddVRF("red", "65000:1", "10.128.0.0/16")
	bin := buildBinaries(b)
	conf := e.conf("red", nil)
	var lat []time.Duration
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nss := make([]ns.NetNS, pods)
		for j := range nss {
			nss[j] = newNS(b)
		}
		work := make(chan int)
		var mu sync.Mutex // guards lat, errs
		var errs []error
		var wg sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range work {
					took, err := e.execAdd(bin, fmt.Sprintf("b%d-%d", i, j), nss[j], conf)
					mu.Lock()
					lat = append(lat, took)
					if err != nil {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			}()
		}
		for j := range pods {
			work <- j
		}
		close(work)
		wg.Wait()
		total += time.Since(start)
		b.StopTimer()
		if len(errs) > 0 {
			b.Fatal(errs[0])
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/100pods")
	reportLatency(b, lat)
}
