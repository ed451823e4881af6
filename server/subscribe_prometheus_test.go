package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// promSample is one sample of a scrape: metric name, labels, value.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseProm reads the Prometheus text exposition format, enough for
// gnmic's output: name{k="v",...} value [timestamp].
func parseProm(text string) ([]promSample, error) {
	var out []promSample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := promSample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			end := strings.Index(line, "}")
			if end < 0 {
				return nil, fmt.Errorf("parse %q: no closing brace", line)
			}
			for _, kv := range strings.Split(line[i+1:end], ",") {
				if kv == "" {
					continue
				}
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("parse %q: label %q", line, kv)
				}
				s.labels[k] = strings.Trim(v, `"`)
			}
			rest = strings.TrimSpace(line[end+1:])
		} else {
			s.name, rest, _ = strings.Cut(line, " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("parse %q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, nil
}

// scrape fetches url and returns its samples, or an error while the
// endpoint is not up yet.
func scrape(ctx context.Context, url string) ([]promSample, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, string(b), fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	samples, err := parseProm(string(b))
	return samples, string(b), err
}

// findSample returns the value of the metric name whose labels include
// want.
func findSample(samples []promSample, name string, want map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			match = match && s.labels[k] == v
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPrometheusRecipe runs the real gnmic with docs/gnmic-prometheus.yaml
// against a server whose core holds VRF, interface and tunnel counters,
// scrapes gnmic's Prometheus endpoint over HTTP and finds each counter
// with its value, then a changed value after the next sample.
func TestPrometheusRecipe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gnmic")
	}
	e := newTestEnv(t)
	g := newGnmic(t, e)
	baseConfig(t, e) // VRFs red and blue, interface eth0, BGP neighbor 192.0.2.2
	vrfState := func(name string, noRoute uint64) {
		t.Helper()
		st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State{
			Counters: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Counters{
				NoRoute: ygot.Uint64(noRoute), TtlExpired: ygot.Uint64(2), AclDenied: ygot.Uint64(0),
			},
			Forwarding: &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_State_Forwarding{
				LocalRoutes: ygot.Uint32(4), RemoteRoutes: ygot.Uint32(11),
			},
		}
		if err := e.core.UpdateState(vrfPath(name)+"/state", st); err != nil {
			t.Fatal(err)
		}
	}
	vrfState("red", 7)
	vrfState("blue", 0)
	type nbrState = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_State
	type afiState = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State
	type prefixes = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor_AfiSafis_AfiSafi_State_Prefixes
	if err := e.core.UpdateState(nbr+"/state", &nbrState{
		SessionState: gen.IsthmusTypes_SessionState_ESTABLISHED, EstablishedTransitions: ygot.Uint64(3), Uptime: ygot.Uint64(120),
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.core.UpdateState(nbr+"/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/state", &afiState{
		AfiSafiName: gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST, Prefixes: &prefixes{Received: ygot.Uint32(5)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.core.UpdateState("/interfaces/interface[name=eth0]/state", &gen.IsthmusInterfaces_Interfaces_Interface_State{
		Counters: &gen.IsthmusInterfaces_Interfaces_Interface_State_Counters{InPkts: ygot.Uint64(1234), OutOctets: ygot.Uint64(98765)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.core.UpdateState("/tunnel/state/counters", &gen.IsthmusTunnel_Tunnel_State_Counters{UnknownLabel: ygot.Uint64(3)}); err != nil {
		t.Fatal(err)
	}
	if err := e.core.UpdateState("/tunnel/endpoints/endpoint[address=192.0.2.7]/state", &gen.IsthmusTunnel_Tunnel_Endpoints_Endpoint_State{
		Address: ygot.String("192.0.2.7"), InPkts: ygot.Uint64(55),
	}); err != nil {
		t.Fatal(err)
	}

	_, file, _, _ := runtime.Caller(0)
	cfgFile := filepath.Join(filepath.Dir(file), "..", "docs", "gnmic-prometheus.yaml")
	cfg, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	// The recipe's own file, with only the scrape port moved to a free
	// one so that tests may run side by side.
	const listen = "listen: 127.0.0.1:9804"
	if !strings.Contains(string(cfg), listen) {
		t.Fatalf("%s lacks %q", cfgFile, listen)
	}
	port := freeLoopbackPort(t)
	moved := filepath.Join(t.TempDir(), "gnmic-prometheus.yaml")
	if err := os.WriteFile(moved, []byte(strings.Replace(string(cfg), listen, fmt.Sprintf("listen: 127.0.0.1:%d", port), 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out lockedBuffer
	cmd := exec.CommandContext(ctx, g.bin, g.args(adminUser, adminPass, []string{"--config", moved, "subscribe"})...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait() // killed by cancel: its exit status says nothing
	}()

	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	red := map[string]string{"network_instance_name": "red"}
	peer := map[string]string{"network_instance_name": "default", "neighbor_neighbor_address": "192.0.2.2"}
	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"isthmus_network_instances_network_instance_state_counters_no_route", red, 7},
		{"isthmus_network_instances_network_instance_state_counters_ttl_expired", red, 2},
		{"isthmus_network_instances_network_instance_state_counters_no_route", map[string]string{"network_instance_name": "blue"}, 0},
		{"isthmus_network_instances_network_instance_state_forwarding_local_routes", red, 4},
		{"isthmus_network_instances_network_instance_state_forwarding_remote_routes", red, 11},
		{"isthmus_interfaces_interface_state_counters_in_pkts", map[string]string{"interface_name": "eth0"}, 1234},
		{"isthmus_interfaces_interface_state_counters_out_octets", map[string]string{"interface_name": "eth0"}, 98765},
		{"isthmus_tunnel_state_counters_unknown_label", nil, 3},
		{"isthmus_network_instances_network_instance_protocols_protocol_bgp_neighbors_neighbor_state_established_transitions", peer, 3},
		{"isthmus_network_instances_network_instance_protocols_protocol_bgp_neighbors_neighbor_afi_safis_afi_safi_state_prefixes_received", map[string]string{"neighbor_neighbor_address": "192.0.2.2", "afi_safi_afi_safi_name": "L3VPN_IPV4_UNICAST"}, 5},
		{"isthmus_tunnel_endpoints_endpoint_state_in_pkts", map[string]string{"endpoint_address": "192.0.2.7"}, 55},
	}
	var last string
	found := func(name string, labels map[string]string, value float64) bool {
		samples, text, err := scrape(ctx, url)
		last = text
		if err != nil {
			return false
		}
		v, ok := findSample(samples, name, labels)
		return ok && v == value
	}
	waitScrape := func(name string, labels map[string]string, value float64) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for !found(name, labels, value) {
			if time.Now().After(deadline) {
				t.Fatalf("%s%v = %v never scraped; last scrape:\n%s\ngnmic:\n%s", name, labels, value, last, out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, w := range want {
		waitScrape(w.name, w.labels, w.value)
	}
	t.Logf("scraped:\n%s", last) // the sample in docs/prometheus.md

	// A counter the dataplane raises shows at the next sample.
	vrfState("red", 42)
	waitScrape("isthmus_network_instances_network_instance_state_counters_no_route", red, 42)
}
