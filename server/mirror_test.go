package server

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/value"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// mirrorConfig sets, beside baseConfig, a leaf of nearly every config
// container: VRF, static route, BGP global, neighbor and its transport,
// timers, graceful restart, route reflection, multihop and family,
// interfaces with their pod, the tunnel and its neighbors, ACL sets and
// entries, CNI namespaces.
func mirrorConfig(t *testing.T, e *testEnv) {
	t.Helper()
	baseConfig(t, e)
	_, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{
		upd(t, "/acl/acl-sets/acl-set[name=web]", ietf(`{"config":{"name":"web","description":"web servers"},
		  "acl-entries":{"acl-entry":[{"sequence-id":10,"config":{"sequence-id":10,"description":"http","action":"ACCEPT",
		    "protocol":6,"source-address":"10.1.0.0/24","destination-address":"10.2.0.0/24","source-port":1024,"destination-port":80}}]}}`)),
		upd(t, red+"/config", ietf(`{"description":"tenant red","encapsulation":"MPLS_OVER_UDP","label-allocation-mode":"PER_VRF"}`)),
		upd(t, red+"/static-routes/static[prefix=10.9.0.0/16]", ietf(`{"config":{"prefix":"10.9.0.0/16","interface":"pod1","description":"to the lab"}}`)),
		upd(t, pod1+"/config", ietf(`{"description":"web pod","enabled":true,"mtu":1400,"mac-address":"02:00:00:00:00:01",
		  "pod":{"name":"web-0","namespace":"shop","netns":"/var/run/netns/web-0","container-id":"abc123","ifname":"eth0","peer-mac-address":"02:00:00:00:00:02"}}`)),
		upd(t, "/tunnel", ietf(`{"config":{"source-address":"192.0.2.1","udp-port":6635,"mtu":9000,"transport-label":100,"underlay-interface":"eth0"},
		  "neighbors":{"neighbor":[{"address":"192.0.2.2","config":{"address":"192.0.2.2","transport-label":200}}]}}`)),
		upd(t, bgp+"/global/graceful-restart/config", ietf(`{"enabled":true,"restart-time":120,"stale-routes-time":300}`)),
		upd(t, nbr, ietf(`{"config":{"description":"peer two","enabled":true,"auth-password":"s3cret"},
		  "timers":{"config":{"hold-time":90,"keepalive-interval":30}},
		  "transport":{"config":{"local-address":"192.0.2.1","passive-mode":true}},
		  "graceful-restart":{"config":{"enabled":true,"restart-time":120}},
		  "route-reflector":{"config":{"route-reflector-client":true,"route-reflector-cluster-id":"192.0.2.1"}},
		  "ebgp-multihop":{"config":{"enabled":true,"multihop-ttl":5}},
		  "afi-safis":{"afi-safi":[{"afi-safi-name":"L3VPN_IPV4_UNICAST","config":{"afi-safi-name":"L3VPN_IPV4_UNICAST","enabled":true}}]}}`)),
		upd(t, "/cni/namespaces/namespace[name=shop]", ietf(`{"config":{"name":"shop","network-instance":"red"}}`)),
	}})
	if err != nil {
		t.Fatalf("mirror config: %v", err)
	}
}

// mirrorPairs reads docs/paths.md and returns every configuration leaf
// whose state twin (the last `config` element replaced by `state`) the
// reference lists, as config path → state path.
func mirrorPairs(t *testing.T) map[string]string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(file), "..", "docs", "paths.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	access := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) < 5 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`/") {
			continue
		}
		access[strings.Trim(strings.TrimSpace(cols[1]), "`")] = strings.TrimSpace(cols[3])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	pairs := map[string]string{}
	for p, acc := range access {
		i := strings.LastIndex(p, "/config/")
		if acc != "rw" || i < 0 {
			continue
		}
		s := p[:i] + "/state/" + p[i+len("/config/"):]
		if access[s] == "ro" {
			pairs[p] = s
		}
	}
	if len(pairs) < 50 {
		t.Fatalf("only %d config/state pairs in docs/paths.md", len(pairs))
	}
	return pairs
}

// getLeaves returns the leaves at path (wildcards allowed) by path, or
// nil when there are none.
func getLeaves(t *testing.T, e *testEnv, typ gpb.GetRequest_DataType, path string) map[string]any {
	t.Helper()
	resp, err := e.cli.Get(viewer(), &gpb.GetRequest{Type: typ, Encoding: gpb.Encoding_PROTO, Path: []*gpb.Path{mustPath(t, path)}})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatalf("get %s %s: %v", typ, path, err)
	}
	m := map[string]any{}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			v, err := value.ToScalar(u.GetVal())
			if err != nil {
				t.Fatalf("%s: %v", pathString(u.GetPath()), err)
			}
			m[pathString(u.GetPath())] = v
		}
	}
	return m
}

// TestStateMirrorsConfig walks every config leaf of docs/paths.md that
// has a state twin: wherever the configuration holds the leaf, Get STATE
// returns it under state with the same value; a deleted leaf leaves
// state, and Subscribe sees the mirror too.
func TestStateMirrorsConfig(t *testing.T) {
	e := newTestEnv(t)
	mirrorConfig(t, e)
	checked := map[string]int{}
	var unset []string
	for cfgPath, statePath := range mirrorPairs(t) {
		cfg := getLeaves(t, e, gpb.GetRequest_CONFIG, cfgPath)
		if len(cfg) == 0 {
			unset = append(unset, cfgPath)
			continue
		}
		st := getLeaves(t, e, gpb.GetRequest_STATE, statePath)
		for p, v := range cfg {
			i := strings.LastIndex(p, "/config/")
			sp := p[:i] + "/state/" + p[i+len("/config/"):]
			got, ok := st[sp]
			if !ok {
				t.Errorf("%s is configured (%v) but %s returns nothing", p, v, sp)
				continue
			}
			if !reflect.DeepEqual(got, v) {
				t.Errorf("%s = %v, its state %s = %v", p, v, sp, got)
			}
			checked[strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]]++
		}
	}
	sort.Strings(unset)
	t.Logf("config leaves not set by this test: %d\n%s", len(unset), strings.Join(unset, "\n"))
	for _, top := range []string{"network-instances", "interfaces", "tunnel", "acl", "cni"} {
		if checked[top] == 0 {
			t.Errorf("no mirrored leaf checked under /%s", top)
		}
	}
	for _, p := range []string{
		red + "/state/route-distinguisher", "/tunnel/state/source-address", nbr + "/route-reflector/state/route-reflector-client",
		nbr + "/ebgp-multihop/state/multihop-ttl", nbr + "/transport/state/passive-mode", red + "/static-routes/static[prefix=10.9.0.0/16]/state/description",
	} {
		if len(getLeaves(t, e, gpb.GetRequest_STATE, p)) != 1 {
			t.Errorf("get state %s: nothing", p)
		}
	}

	// A deleted leaf goes from state.
	descr := red + "/state/description"
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, red+"/config/description")}}); err != nil {
		t.Fatal(err)
	}
	if got := getLeaves(t, e, gpb.GetRequest_STATE, descr); len(got) != 0 {
		t.Errorf("after deleting the description, state has %v", got)
	}

	// gnmic sees the applied configuration under state.
	if !testing.Short() {
		g := newGnmic(t, e)
		g.mustRun(t, []string{"6635", "192.0.2.1", "eth0"}, "get", "--type", "state", "--path", "/tunnel/state")
		g.mustRun(t, []string{"65000:1"}, "get", "--type", "state", "--path", red+"/state/route-distinguisher")
	}

	// Subscribe reads the same mirror.
	got := onceLeaves(t, e, "/tunnel/state")
	if got["/tunnel/state/udp-port"] != uint64(6635) || got["/tunnel/state/underlay-interface"] != "eth0" {
		t.Errorf("subscribe once /tunnel/state: %v", got)
	}
}

// onceLeaves subscribes ONCE to path and returns the leaves received.
func onceLeaves(t *testing.T, e *testEnv, path string) map[string]any {
	t.Helper()
	sub, err := e.cli.Subscribe(viewer())
	if err != nil {
		t.Fatal(err)
	}
	req := &gpb.SubscribeRequest{Request: &gpb.SubscribeRequest_Subscribe{Subscribe: &gpb.SubscriptionList{
		Mode: gpb.SubscriptionList_ONCE, Encoding: gpb.Encoding_PROTO,
		Subscription: []*gpb.Subscription{{Path: mustPath(t, path)}},
	}}}
	if err := sub.Send(req); err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	for {
		resp, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscribe %s: %v", path, err)
		}
		if resp.GetSyncResponse() {
			return m
		}
		n := resp.GetUpdate()
		for _, u := range n.GetUpdate() {
			full := &gpb.Path{Elem: append(append([]*gpb.PathElem{}, n.GetPrefix().GetElem()...), u.GetPath().GetElem()...)}
			v, err := value.ToScalar(u.GetVal())
			if err != nil {
				t.Fatal(err)
			}
			m[pathString(full)] = v
		}
	}
}
