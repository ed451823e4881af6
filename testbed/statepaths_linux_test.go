package testbed

import (
	"bufio"
	"context"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// stateExempt are state leaves that hold no data on the configured c1,
// each with the reason.
var stateExempt = map[string]string{
	"/interfaces/interface[name=*]/state/label": "per-prefix label mode only; the mission's VRFs allocate per VRF",
	// The walk's confirmed commit is cancelled after the walk and reverts
	// cleanly; nos TestConfirmedRollbackKeepsLaterEntries checks all three.
	"/system/confirmed-commit/last-rollback/state/id":           "only after a rollback that left entries unreverted",
	"/system/confirmed-commit/last-rollback/state/not-reverted": "only after a rollback that left entries unreverted",
	"/system/confirmed-commit/last-rollback/state/revision":     "only after a rollback that left entries unreverted",
}

// stateUnconfigured are operational state leaves of a container c1 does
// not configure, so the walk finds no entry for them.
var stateUnconfigured = map[string]string{
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/graceful-restart/state/peer-restart-time": "c1's neighbor does not configure graceful restart",
}

// isMirror reports whether state leaf p mirrors a configuration leaf.
func isMirror(ref map[string]string, p string) bool {
	i := strings.LastIndex(p, "/state/")
	return i >= 0 && ref[p[:i]+"/config/"+p[i+len("/state/"):]] == "rw"
}

// stateWhen are state leaves that apply to some entries of their list
// only: given the value of another leaf of the same entry (a path
// relative to the entry), each says why the leaf does not apply to that
// entry, or "".
var stateWhen = map[string]func(leaf func(string) string) string{
	aftEntry + "/state/route-distinguisher": bgpEntryOnly,
	aftEntry + "/state/route-target":        bgpEntryOnly,
	aftNextHop + "/interface-ref/state/interface": func(leaf func(string) string) string {
		if leaf("state/ip-address") != "" {
			return "a remote next hop leaves by the tunnel, not by an interface"
		}
		return ""
	},
	aftNextHop + "/state/ip-address":              localNextHopNot,
	aftNextHop + "/state/encapsulate-header":      localNextHopNot,
	aftNextHop + "/state/pushed-mpls-label-stack": localNextHopNot,
	aclFlowPath + "/denied-at":                    refusedFlowOnly,
	aclFlowPath + "/interface":                    refusedFlowOnly,
}

const (
	aftEntry    = "/network-instances/network-instance[name=*]/afts/ipv4-unicast/ipv4-entry[prefix=*]"
	aftNextHop  = "/network-instances/network-instance[name=*]/afts/next-hops/next-hop[index=*]"
	aclFlowPath = "/network-instances/network-instance[name=*]/state/acl-flows/flow[protocol=*][source-address=*][source-port=*][destination-address=*][destination-port=*]"
)

// bgpEntryOnly: route distinguishers and targets come with BGP paths; a
// static route or a pod's address has none.
func bgpEntryOnly(leaf func(string) string) string {
	if o := leaf("state/origin-protocol"); !strings.Contains(o, "BGP") {
		return "an entry of origin " + o + " has no BGP path"
	}
	return ""
}

// localNextHopNot: a next hop through a local interface has no remote
// endpoint, encapsulation or VPN label.
func localNextHopNot(leaf func(string) string) string {
	if leaf("interface-ref/state/interface") != "" {
		return "a next hop through a local interface"
	}
	return ""
}

// refusedFlowOnly: where and at which interface a flow was refused says
// nothing about an allowed flow.
func refusedFlowOnly(leaf func(string) string) string {
	if v := leaf("verdict"); strings.Contains(v, "ALLOW") {
		return "an allowed flow"
	}
	return ""
}

// TestStatePathsOnConfiguredHost walks every state path of docs/paths.md
// against c1 of the mission, configured, with a pod that has talked to a
// pod on d1, an ACL set on that pod, a service, a static route, source
// NAT and a floating IP, and a confirmed commit waiting
// (configureStateObjects, startConfirmedCommit): wherever the thing a
// path describes exists (its list entry, or its top container), the path
// returns data, for each such entry; a state leaf mirroring a
// configuration leaf does wherever that leaf is configured; and every
// operational path applies to at least one entry.
func TestStatePathsOnConfiguredHost(t *testing.T) {
	RequirePrivileges(t, "nsenter", frrBGPd, frrZebra, vtyshBin)
	bins := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb, _, _ := missionUp(t, ctx, bins)
	a, err := tb.AddPod(ctx, "c1", "sa", "red")
	if err != nil {
		t.Fatal(err)
	}
	b, err := tb.AddPod(ctx, "d1", "sb", "red")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.waitRemoteRoutes(ctx, "c1", "red"); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.PodPing(ctx, a, PingOptions{To: b.Address.String(), Count: 3}); err != nil {
		t.Fatal(err)
	}
	defer configureStateObjects(t, ctx, tb, a, b)()
	defer startConfirmedCommit(t, ctx, tb)()
	addr, err := tb.GNMIAddr("c1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return tb.Dial(ctx, "c1", "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cli := gpb.NewGNMIClient(conn)
	cache := map[string]map[string]string{}
	get := func(typ gpb.GetRequest_DataType, path string) map[string]string {
		key := typ.String() + " " + path
		if got, ok := cache[key]; ok {
			return got
		}
		p, err := ygot.StringToStructuredPath(path)
		if err != nil {
			t.Fatalf("path %s: %v", path, err)
		}
		resp, err := cli.Get(ctx, &gpb.GetRequest{Type: typ, Encoding: gpb.Encoding_PROTO, Path: []*gpb.Path{p}})
		if status.Code(err) == codes.NotFound {
			err = nil
		}
		if err != nil {
			t.Fatalf("get %s %s: %v", typ, path, err)
		}
		out := map[string]string{}
		for _, n := range resp.GetNotification() {
			for _, u := range n.GetUpdate() {
				s, err := ygot.PathToString(&gpb.Path{Elem: append(append([]*gpb.PathElem{}, n.GetPrefix().GetElem()...), u.GetPath().GetElem()...)})
				if err != nil {
					t.Fatal(err)
				}
				out[s] = u.GetVal().String()
			}
		}
		cache[key] = out
		return out
	}
	// State loops publish every few seconds: read again until nothing is
	// missing, or for half a minute.
	ref := referencePaths(t)
	missing, checked := missingState(t, ref, get)
	for deadline := time.Now().Add(30 * time.Second); len(missing) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		clear(cache)
		missing, checked = missingState(t, ref, get)
	}
	for _, m := range missing {
		t.Error(m)
	}
	// The walk proves nothing of a path no entry applied to: every
	// operational path (one that mirrors no configuration leaf) applied
	// at least once, unless it is exempt or its container is not
	// configured on c1 (stateUnconfigured).
	n := 0
	for _, p := range slices.Sorted(maps.Keys(ref)) {
		n += checked[p]
		if ref[p] == "ro" && stateExempt[p] == "" && !strings.HasSuffix(p, "]") && checked[p] == 0 && !isMirror(ref, p) && stateUnconfigured[p] == "" {
			t.Errorf("%s: no entry on c1 to check it on", p)
		}
	}
	t.Logf("%d state leaves of %d paths checked on c1", n, len(checked))
}

// referencePaths reads docs/paths.md: path → "rw" or "ro".
func referencePaths(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../docs/paths.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) >= 5 && strings.HasPrefix(strings.TrimSpace(cols[1]), "`/") {
			out[strings.Trim(strings.TrimSpace(cols[1]), "`")] = strings.TrimSpace(cols[3])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// missingState applies the rule of TestStatePathsOnConfiguredHost with
// get (data type, wildcard path → concrete leaf paths) and returns what
// is missing and, per reference path, how many entries it applied to.
func missingState(t *testing.T, ref map[string]string, get func(gpb.GetRequest_DataType, string) map[string]string) ([]string, map[string]int) {
	t.Helper()
	var missing []string
	checked := map[string]int{}
	paths := make([]string, 0, len(ref))
	for p := range ref {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if ref[p] != "ro" || stateExempt[p] != "" || strings.HasSuffix(p, "]") {
			continue
		}
		state := get(gpb.GetRequest_STATE, p)
		i := strings.LastIndex(p, "/state/")
		if isMirror(ref, p) {
			// A mirror: present wherever its configuration leaf is.
			for c := range get(gpb.GetRequest_CONFIG, p[:i]+"/config/"+p[i+len("/state/"):]) {
				j := strings.LastIndex(c, "/config/")
				checked[p]++
				if s := c[:j] + "/state/" + c[j+len("/config/"):]; state[s] == "" {
					missing = append(missing, s+": configured, not in state")
				}
			}
			continue
		}
		// Operational: present for every entry the path is about: the
		// last list entry, or a configurable container below it (one
		// with a config sibling) where that is configured.
		entry, all := entryOf(p), get(gpb.GetRequest_ALL, entryOf(p))
		if i >= 0 && len(p[:i]) > len(entry) && hasConfig(ref, p[:i]) {
			entry, all = p[:i], get(gpb.GetRequest_CONFIG, p[:i]+"/config")
		}
		for _, e := range entries(all, strings.Count(entry, "/")) {
			if why := notApplicable(p, e, get); why != "" {
				continue
			}
			checked[p]++
			found := false
			for s := range state {
				if strings.HasPrefix(s, e+"/") {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, p+": nothing for "+e)
			}
		}
	}
	return missing, checked
}

// hasConfig reports whether the reference has configuration leaves in
// container's config sibling.
func hasConfig(ref map[string]string, container string) bool {
	for p, acc := range ref {
		if acc == "rw" && strings.HasPrefix(p, container+"/config/") {
			return true
		}
	}
	return false
}

// vrfOnly are the state subtrees of a network instance that describe
// tenant forwarding: the DEFAULT instance, which holds the BGP protocol,
// has none.
var vrfOnly = []string{"/state/counters/", "/state/forwarding/", "/state/exported/", "/state/imported/"}

// notApplicable says why path does not apply to the concrete entry, or "".
func notApplicable(path, entry string, get func(gpb.GetRequest_DataType, string) map[string]string) string {
	if when := stateWhen[path]; when != nil {
		wild := entryOf(path)
		if why := when(func(rel string) string { return get(gpb.GetRequest_STATE, wild+"/"+rel)[entry+"/"+rel] }); why != "" {
			return why
		}
	}
	if strings.HasPrefix(path, "/network-instances/network-instance[name=*]/state/") {
		for _, sub := range vrfOnly {
			if strings.Contains(path, sub) && strings.Contains(get(gpb.GetRequest_CONFIG, entry+"/config/type")[entry+"/config/type"], "DEFAULT") {
				return "the DEFAULT instance forwards no tenant traffic"
			}
		}
	}
	return ""
}

// entryOf returns the part of a reference path up to its last list
// element, or its top container.
func entryOf(p string) string {
	if i := strings.LastIndex(p, "]"); i >= 0 {
		return p[:i+1]
	}
	if i := strings.Index(p[1:], "/"); i >= 0 {
		return p[:i+1]
	}
	return p
}

// entries returns the distinct prefixes of depth elements of leaves (the
// concrete entries a wildcard entry path matched). List keys may hold
// slashes (prefixes), so elements are counted outside brackets.
func entries(leaves map[string]string, depth int) []string {
	seen := map[string]bool{}
	var out []string
	for l := range leaves {
		n, in := 0, false
		cut := len(l)
		for i, r := range l {
			switch {
			case r == '[':
				in = true
			case r == ']':
				in = false
			case r == '/' && !in:
				n++
				if n == depth+1 {
					cut = i
				}
			}
			if cut != len(l) {
				break
			}
		}
		if e := l[:cut]; !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	sort.Strings(out)
	return out
}
