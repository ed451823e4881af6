package server

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/isthmus-net/isthmus/gen"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/value"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// mirrorConfig sets, beside baseConfig, every leaf of every config
// container that has a state sibling, at least once: VRF (with its
// tunnel-ingress ACL, external connectivity, floating IPs and services),
// static route, BGP global, neighbor and its transport, timers, graceful
// restart, route reflection, multihop and family, interfaces with their
// pod, ACL attachment and tags, the tunnel and its neighbors, ACL sets
// and entries, address groups, tag keys, CNI namespaces. It is one valid
// configuration: SNAT has a port range and the tunnel's underlay
// interface, VPNV4 floating advertisement names another L3VRF with an RD
// and export route targets, reject-with is only on a REJECT entry, the
// address group names an L3VRF.
func mirrorConfig(t *testing.T, e *testEnv) {
	t.Helper()
	baseConfig(t, e)
	_, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{
		upd(t, "/acl/tag-keys/tag-key[name=app]", ietf(`{"config":{"name":"app"}}`)),
		upd(t, "/acl/address-groups/address-group[name=clients]", ietf(`{"config":{"name":"clients","description":"client pods",
		  "prefix":["10.1.0.0/24"],"except":["10.1.0.128/25"],"network-instance":"red"},
		  "tags":{"tag":[{"key":"app","config":{"key":"app","value":"client"}}]}}`)),
		upd(t, "/acl/acl-sets/acl-set[name=web]", ietf(`{"config":{"name":"web","description":"web servers"},
		  "acl-entries":{"acl-entry":[{"sequence-id":10,"config":{"sequence-id":10,"description":"http","action":"ACCEPT",
		    "protocol":6,"source-address":"10.1.0.0/24","destination-address":"10.2.0.0/24","source-port":1024,"source-port-end":2048,
		    "destination-port":80,"destination-port-end":81,"source-tag-selector":["app=client"],"destination-tag-selector":["app"]}},
		    {"sequence-id":20,"config":{"sequence-id":20,"description":"no pings","action":"REJECT","reject-with":"ICMP_UNREACHABLE",
		    "protocol":1,"icmp-type":8,"source-address-group":"clients","destination-address-group":"clients"}}]}}`)),
		upd(t, red+"/config", ietf(`{"description":"tenant red","encapsulation":"MPLS_OVER_UDP","label-allocation-mode":"PER_VRF",
		  "tunnel-ingress-acl-set":["web"],"tunnel-ingress-default-action":"ACCEPT"}`)),
		upd(t, red+"/static-routes/static[prefix=10.9.0.0/16]", ietf(`{"config":{"prefix":"10.9.0.0/16","interface":"pod1","description":"to the lab"}}`)),
		upd(t, red+"/external", ietf(`{"config":{"default-pod-network":true,"mode":"SNAT","host-access":true,"snat-address":"192.0.2.10",
		  "port-min":20000,"port-max":20999,"floating-pool":["203.0.113.0/28"],"floating-advertise":"VPNV4","floating-network-instance":"blue"},
		  "floating-ips":{"floating-ip":[{"address":"203.0.113.1","config":{"address":"203.0.113.1","pod-address":"10.1.0.5"}}]}}`)),
		upd(t, red+"/services/service[name=web]", ietf(`{"name":"web","config":{"name":"web","address":"10.96.0.10","protocol":"TCP","port":80,
		  "session-affinity":"CLIENT_IP","external-traffic-scope":"LOCAL"},
		  "ports":{"port":[{"name":"https","config":{"name":"https","protocol":"TCP","port":443,"target-port":8443}}]},
		  "backends":{"backend":[{"address":"10.1.0.5","port":8080,"config":{"address":"10.1.0.5","port":8080,"weight":3,
		    "ready":false,"serving":true,"terminating":true}}]}}`)),
		upd(t, pod1+"/config", ietf(`{"description":"web pod","enabled":true,"mtu":1400,"mac-address":"02:00:00:00:00:01",
		  "pod":{"name":"web-0","namespace":"shop","netns":"/var/run/netns/web-0","container-id":"abc123","ifname":"eth0","peer-mac-address":"02:00:00:00:00:02"}}`)),
		upd(t, pod1+"/acl", ietf(`{"config":{"ingress-acl-set":["web"],"ingress-default-action":"DROP","egress-acl-set":["web"],"egress-default-action":"ACCEPT"}}`)),
		upd(t, pod1+"/tags/tag[key=app]", ietf(`{"key":"app","config":{"key":"app","value":"web"}}`)),
		upd(t, "/tunnel", ietf(`{"config":{"source-address":"192.0.2.1","udp-port":6635,"mtu":9000,"transport-label":100,"underlay-interface":"eth0"},
		  "neighbors":{"neighbor":[{"address":"192.0.2.2","config":{"address":"192.0.2.2","transport-label":200}}]}}`)),
		upd(t, bgp+"/global/graceful-restart/config", ietf(`{"enabled":true,"restart-time":120,"stale-routes-time":300}`)),
		upd(t, nbr, ietf(`{"config":{"description":"peer two","enabled":true,"auth-password":"s3cret"},
		  "timers":{"config":{"hold-time":90,"keepalive-interval":30,"connect-retry":15,"minimum-advertisement-interval":5}},
		  "transport":{"config":{"local-address":"192.0.2.1","passive-mode":true}},
		  "graceful-restart":{"config":{"enabled":true,"restart-time":120,"stale-routes-time":240}},
		  "route-reflector":{"config":{"route-reflector-client":true,"route-reflector-cluster-id":"192.0.2.1"}},
		  "ebgp-multihop":{"config":{"enabled":true,"multihop-ttl":5}},
		  "afi-safis":{"afi-safi":[{"afi-safi-name":"L3VPN_IPV4_UNICAST","config":{"afi-safi-name":"L3VPN_IPV4_UNICAST","enabled":true}}]}}`)),
		upd(t, "/cni/namespaces/namespace[name=shop]", ietf(`{"config":{"name":"shop","network-instance":"red"}}`)),
	}})
	if err != nil {
		t.Fatalf("mirror config: %v", err)
	}
}

// mirrorExempt lists the config leaves with a state sibling that
// mirrorConfig does not set, each with the reason.
var mirrorExempt = map[string]string{}

// mirrorPairs walks the schema and returns every configuration leaf
// whose state twin (the last `config` element replaced by `state`, as
// nos/mirror.go mirrors it) exists, as config path → state path, lists
// with every key a wildcard.
func mirrorPairs(t *testing.T) map[string]string {
	t.Helper()
	s, err := gen.Schema()
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string]string{}
	// leaves pairs the leaves under cfg with those under st, at any depth.
	var leaves func(cfg, st *yang.Entry, cp, sp string)
	leaves = func(cfg, st *yang.Entry, cp, sp string) {
		for name, c := range cfg.Dir {
			s := st.Dir[name]
			if s == nil {
				continue
			}
			switch {
			case (c.IsLeaf() || c.IsLeafList()) && (s.IsLeaf() || s.IsLeafList()):
				pairs[cp+"/"+name] = sp + "/" + name
			case c.IsContainer() && s.IsContainer():
				leaves(c, s, cp+"/"+name, sp+"/"+name)
			}
		}
	}
	var walk func(e *yang.Entry, path string)
	walk = func(e *yang.Entry, path string) {
		for name, c := range e.Dir {
			if c.ReadOnly() || c.IsLeaf() || c.IsLeafList() {
				continue
			}
			p := path + "/" + name
			if c.IsList() {
				for _, k := range strings.Fields(c.Key) {
					p += "[" + k + "=*]"
				}
			}
			if st := e.Dir["state"]; name == "config" && st != nil && st.IsContainer() {
				leaves(c, st, p, path+"/state")
				continue
			}
			walk(c, p)
		}
	}
	walk(s.RootSchema(), "")
	if len(pairs) < 100 {
		t.Fatalf("only %d config/state pairs in the schema", len(pairs))
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

// TestStateMirrorsConfig walks every config leaf of the schema that has
// a state twin (the pairs docs/paths.md lists): it fails on a pair that
// mirrorConfig does not set unless mirrorExempt says why; wherever the
// configuration holds the leaf, Get STATE returns it under state with
// the same value and nothing more, after a restart too; deleted and
// replaced leaves and subtrees leave state, and Subscribe sees the
// mirror too.
func TestStateMirrorsConfig(t *testing.T) {
	d := newDaemon(t)
	e := d.env
	mirrorConfig(t, e)
	pairs := mirrorPairs(t)
	checked, unset := compareMirror(t, e, pairs)
	isUnset := map[string]bool{}
	for _, p := range unset {
		isUnset[p] = true
		if _, ok := mirrorExempt[p]; !ok {
			t.Errorf("config leaf %s has state sibling %s but this test never sets it (set it in mirrorConfig, or exempt it with a reason in mirrorExempt)", p, pairs[p])
		}
	}
	for p, why := range mirrorExempt {
		if _, ok := pairs[p]; !ok {
			t.Errorf("exemption %s names no config leaf with a state sibling", p)
		} else if !isUnset[p] {
			t.Errorf("%s is exempt (%s) but set: drop the exemption", p, why)
		}
	}
	if got := getLeaves(t, e, gpb.GetRequest_STATE, "/system/state/mirror-failures"); got["/system/state/mirror-failures"] != uint64(0) {
		t.Errorf("/system/state/mirror-failures = %v, want 0", got)
	}
	t.Logf("%d config/state pairs, %d exempt, leaves checked by top-level container: %v", len(pairs), len(mirrorExempt), checked)
	for _, top := range []string{"network-instances", "interfaces", "tunnel", "acl", "cni"} {
		if checked[top] == 0 {
			t.Errorf("no mirrored leaf checked under /%s", top)
		}
	}

	// A restart mirrors the restored configuration again.
	d.stop()
	d.start(t)
	e = d.env
	if _, unset := compareMirror(t, e, pairs); len(unset) != len(mirrorExempt) {
		t.Errorf("after a restart, configured leaves are missing: %v", unset)
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

	// A changed leaf-list is mirrored whole, not merged with what was there.
	sel := "/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=10]/config/source-tag-selector"
	for _, terms := range []string{`["app=client","!app"]`, `["!app"]`} {
		if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, sel, ietf(terms))}}); err != nil {
			t.Fatalf("set %s %s: %v", sel, terms, err)
		}
		compareMirror(t, e, map[string]string{sel: strings.Replace(sel, "/config/", "/state/", 1)})
	}

	// Deleting or replacing a subtree takes every mirrored leaf under it
	// from state: containers (external, the interface's acl, the tunnel,
	// timers), list entries (a service, an ACL entry, tags), a leaf-list,
	// a container inside config (the interface's pod), and the leaves a
	// replace leaves out.
	_, err := e.cli.Set(admin(), &gpb.SetRequest{
		Delete: []*gpb.Path{
			mustPath(t, red+"/external"), mustPath(t, red+"/services/service[name=web]"), mustPath(t, red+"/config/tunnel-ingress-acl-set"),
			mustPath(t, pod1+"/acl"), mustPath(t, pod1+"/tags/tag[key=app]"), mustPath(t, pod1+"/config/pod"), mustPath(t, "/tunnel"),
			mustPath(t, nbr+"/timers"), mustPath(t, "/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=20]"),
			mustPath(t, "/acl/address-groups/address-group[name=clients]/tags"),
		},
		Replace: []*gpb.Update{upd(t, nbr+"/graceful-restart/config", ietf(`{"enabled":true}`))},
	})
	if err != nil {
		t.Fatalf("delete mirrored subtrees: %v", err)
	}
	if _, unset := compareMirror(t, e, pairs); len(unset) == 0 {
		t.Errorf("nothing was deleted")
	}
	for _, p := range []string{red + "/external/state", pod1 + "/acl/state", pod1 + "/state/pod", "/tunnel/state", nbr + "/timers/state",
		nbr + "/graceful-restart/state/restart-time", red + "/services"} {
		if got := getLeaves(t, e, gpb.GetRequest_STATE, p); len(got) != 0 {
			t.Errorf("after deleting its config, %s has %v", p, got)
		}
	}
}

// compareMirror checks every pair of pairs (config path → state path):
// each configured leaf appears under state with the same value, and each
// state leaf has its configured twin with that value (nothing else writes
// state in this test). It returns how many leaves it checked by top-level
// container, and the config paths configured nowhere.
func compareMirror(t *testing.T, e *testEnv, pairs map[string]string) (map[string]int, []string) {
	t.Helper()
	checked := map[string]int{}
	var unset []string
	for cfgPath, statePath := range pairs {
		cfg := getLeaves(t, e, gpb.GetRequest_CONFIG, cfgPath)
		st := getLeaves(t, e, gpb.GetRequest_STATE, statePath)
		for sp, v := range st {
			i := strings.LastIndex(sp, "/state/")
			p := sp[:i] + "/config/" + sp[i+len("/state/"):]
			if _, ok := cfg[p]; !ok {
				t.Errorf("%s = %v in state, but %s is not configured", sp, v, p)
			}
		}
		if len(cfg) == 0 {
			unset = append(unset, cfgPath)
			continue
		}
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
	return checked, unset
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
