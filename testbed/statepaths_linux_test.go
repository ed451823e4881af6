package testbed

import (
	"bufio"
	"context"
	"net"
	"os"
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

// stateExempt are state leaves that legitimately hold no data on a
// configured host, each with the reason.
var stateExempt = map[string]string{
	"/network-instances/network-instance[name=*]/afts/ipv4-unicast/ipv4-entry[prefix=*]/state/route-distinguisher":                                                                                                                           "BGP entries only (a local pod's entry has no RD)",
	"/network-instances/network-instance[name=*]/afts/ipv4-unicast/ipv4-entry[prefix=*]/state/route-target":                                                                                                                                  "BGP entries only (a local pod's entry has no RT)",
	"/network-instances/network-instance[name=*]/afts/next-hops/next-hop[index=*]/interface-ref/state/interface":                                                                                                                             "next hops to a local pod only",
	"/network-instances/network-instance[name=*]/afts/next-hops/next-hop[index=*]/state/ip-address":                                                                                                                                          "remote next hops only",
	"/network-instances/network-instance[name=*]/afts/next-hops/next-hop[index=*]/state/encapsulate-header":                                                                                                                                  "remote next hops only",
	"/network-instances/network-instance[name=*]/afts/next-hops/next-hop[index=*]/state/pushed-mpls-label-stack":                                                                                                                             "remote next hops only",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/received/path[nlri=*][path-id=*]/state/local-pref":            "paths that carry LOCAL_PREF only (iBGP)",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/received/path[nlri=*][path-id=*]/state/label":                 "L3VPN_IPV4_UNICAST paths only",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/received/path[nlri=*][path-id=*]/state/route-distinguisher":   "L3VPN_IPV4_UNICAST paths only",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/received/path[nlri=*][path-id=*]/state/route-target":          "paths that carry route targets only",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/advertised/path[nlri=*][path-id=*]/state/local-pref":          "paths that carry LOCAL_PREF only (iBGP)",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/advertised/path[nlri=*][path-id=*]/state/label":               "L3VPN_IPV4_UNICAST paths only",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/advertised/path[nlri=*][path-id=*]/state/route-distinguisher": "L3VPN_IPV4_UNICAST paths only",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/afi-safis/afi-safi[afi-safi-name=*]/paths/advertised/path[nlri=*][path-id=*]/state/route-target":        "paths that carry route targets only",
	"/interfaces/interface[name=*]/state/label":                                    "per-prefix label mode only; the mission's VRFs allocate per VRF",
	"/network-instances/network-instance[name=*]/state/counters/tunnel-acl-denied": "tunnel ingress ACLs only",
	"/network-instances/network-instance[name=*]/state/counters/acl-denied":        "ACLs only",
	"/system/confirmed-commit/state/id":                                            "while a confirmed commit waits only",
	"/system/confirmed-commit/state/user":                                          "while a confirmed commit waits only",
	"/system/confirmed-commit/state/revision":                                      "while a confirmed commit waits only",
	"/system/confirmed-commit/state/rollback-revision":                             "while a confirmed commit waits only",
	"/system/confirmed-commit/state/deadline":                                      "while a confirmed commit waits only",
	"/network-instances/network-instance[name=*]/protocols/protocol[identifier=*][name=*]/bgp/neighbors/neighbor[neighbor-address=*]/graceful-restart/state/peer-restart-time": "only when the peer advertises graceful restart",
}

// TestStatePathsOnConfiguredHost walks every state path of docs/paths.md
// against c1 of the mission, configured, with a pod that has talked to a
// pod on d1: wherever the thing a path describes exists (its list entry,
// or its top container), the path returns data, for each such entry; a
// state leaf mirroring a configuration leaf does wherever that leaf is
// configured.
func TestStatePathsOnConfiguredHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tb, _, _ := missionUp(t, ctx)
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
	t.Logf("%d state paths checked on c1", checked)
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
// is missing and how many state paths applied.
func missingState(t *testing.T, ref map[string]string, get func(gpb.GetRequest_DataType, string) map[string]string) ([]string, int) {
	t.Helper()
	var missing []string
	checked := 0
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
		if i >= 0 && ref[p[:i]+"/config/"+p[i+len("/state/"):]] == "rw" {
			// A mirror: present wherever its configuration leaf is.
			for c := range get(gpb.GetRequest_CONFIG, p[:i]+"/config/"+p[i+len("/state/"):]) {
				j := strings.LastIndex(c, "/config/")
				checked++
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
			checked++
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
