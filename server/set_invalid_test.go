package server

import (
	"regexp"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// baseConfig is committed before every invalid request: two VRFs, a pod
// in red, an underlay interface and BGP in the default instance.
func baseConfig(t testing.TB, e *testEnv) {
	t.Helper()
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	e.addVRF(t, "blue", "65000:2", "10.2.0.0/24")
	_, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{
		upd(t, "/interfaces/interface[name=pod1]", ietf(`{"config":{"name":"pod1","type":"POD","network-instance":"red","ipv4-address":"10.1.0.5/32"}}`)),
		upd(t, "/interfaces/interface[name=eth0]", ietf(`{"config":{"name":"eth0","type":"UNDERLAY"}}`)),
		upd(t, vrfPath("default"), ietf(`{"config":{"name":"default","type":"DEFAULT"},
		  "protocols":{"protocol":[{"identifier":"BGP","name":"bgp","config":{"identifier":"BGP","name":"bgp"},
		    "bgp":{"global":{"config":{"as":65000,"router-id":"192.0.2.1"}},
		      "neighbors":{"neighbor":[{"neighbor-address":"192.0.2.2","config":{"neighbor-address":"192.0.2.2","peer-as":65000}}]}}}]}}`)),
	}})
	if err != nil {
		t.Fatalf("base config: %v", err)
	}
}

const (
	red     = "/network-instances/network-instance[name=red]"
	blue    = "/network-instances/network-instance[name=blue]"
	green   = "/network-instances/network-instance[name=green]"
	redRD   = red + "/config/route-distinguisher"
	pod1    = "/interfaces/interface[name=pod1]"
	pod2    = "/interfaces/interface[name=pod2]"
	bgp     = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp"
	nbr     = bgp + "/neighbors/neighbor[neighbor-address=192.0.2.2]"
	tunnelC = "/tunnel/config"
	// aclEntry is an entry of an ACL set the base configuration lacks: a
	// Set of it alone creates the set.
	aclEntry = "/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=10]"
)

type invalidCase struct {
	name string
	req  func(t testing.TB) *gpb.SetRequest
	code codes.Code
	want []string // substrings of the message: the path and the reason
}

// up builds a request of updates from path/value pairs.
func up(pairs ...any) func(t testing.TB) *gpb.SetRequest {
	return func(t testing.TB) *gpb.SetRequest {
		req := &gpb.SetRequest{}
		for i := 0; i < len(pairs); i += 2 {
			req.Update = append(req.Update, upd(t, pairs[i].(string), pairs[i+1].(*gpb.TypedValue)))
		}
		return req
	}
}

func del(paths ...string) func(t testing.TB) *gpb.SetRequest {
	return func(t testing.TB) *gpb.SetRequest {
		req := &gpb.SetRequest{}
		for _, p := range paths {
			req.Delete = append(req.Delete, mustPath(t, p))
		}
		return req
	}
}

func uintv(v uint64) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: v}}
}
func boolv(v bool) *gpb.TypedValue {
	return &gpb.TypedValue{Value: &gpb.TypedValue_BoolVal{BoolVal: v}}
}

func podJSON(name, vrf, addr string) *gpb.TypedValue {
	return ietf(`{"config":{"name":"` + name + `","type":"POD","network-instance":"` + vrf + `","ipv4-address":"` + addr + `"}}`)
}

func bgpJSON(name string) string {
	return `{"identifier":"BGP","name":"` + name + `","config":{"identifier":"BGP","name":"` + name + `"},
	  "bgp":{"global":{"config":{"as":65001,"router-id":"192.0.2.9"}}}}`
}

var invalidCases = []invalidCase{
	// Paths that are not in the schema.
	{"unknown top-level element", up("/nope/config/x", str("1")), codes.InvalidArgument, []string{"/nope", "unknown element"}},
	{"unknown leaf in vrf config", up(red+"/config/colour", str("blue")), codes.InvalidArgument, []string{red + "/config/colour", "colour"}},
	{"unknown list key name", up("/network-instances/network-instance[id=red]/config/description", str("x")), codes.InvalidArgument, []string{"network-instance[id=red]", "key"}},
	{"keys on a container", up("/network-instances[name=x]/network-instance[name=red]/config/description", str("x")), codes.InvalidArgument, []string{"network-instances[name=x]", "not a list"}},
	{"unknown element under interface", up(pod1+"/config/speed", uintv(10)), codes.InvalidArgument, []string{pod1 + "/config/speed"}},
	{"delete unknown path", del(red + "/config/nothing"), codes.InvalidArgument, []string{red + "/config/nothing"}},
	{"wildcard key in set", up("/network-instances/network-instance[name=*]/config/description", str("x")), codes.InvalidArgument, []string{"[name=*]", "wildcard"}},
	{"wildcard name in set", up(red+"/*/description", str("x")), codes.InvalidArgument, []string{red + "/*/description", "wildcard"}},
	{"unsupported origin", func(t testing.TB) *gpb.SetRequest {
		p := mustPath(t, redRD)
		p.Origin = "openconfig"
		return &gpb.SetRequest{Update: []*gpb.Update{{Path: p, Val: str("65000:9")}}}
	}, codes.InvalidArgument, []string{redRD, "origin"}},
	{"unknown target", func(t testing.TB) *gpb.SetRequest {
		return &gpb.SetRequest{Prefix: &gpb.Path{Target: "elsewhere"}, Update: []*gpb.Update{upd(t, redRD, str("65000:9"))}}
	}, codes.NotFound, []string{"elsewhere", "target"}},

	// State is read-only.
	{"update a state leaf", up(red+"/state/forwarding/labels", uintv(100)), codes.InvalidArgument, []string{red + "/state/forwarding/labels", "state"}},
	{"delete a state container", del(red + "/state"), codes.InvalidArgument, []string{red + "/state", "state"}},
	{"update interface counters", up(pod1+"/state/counters/in-pkts", uintv(1)), codes.InvalidArgument, []string{pod1 + "/state", "state"}},

	// Wrong types and values out of range.
	{"rd as a number", up(redRD, uintv(65000)), codes.InvalidArgument, []string{redRD}},
	{"mtu as a string", up(pod1+"/config/mtu", str("big")), codes.InvalidArgument, []string{pod1 + "/config/mtu"}},
	{"mtu below range", up(pod1+"/config/mtu", uintv(100)), codes.InvalidArgument, []string{"mtu", "100"}},
	{"mtu above range", up(pod1+"/config/mtu", uintv(10000)), codes.InvalidArgument, []string{"mtu", "10000"}},
	{"mtu overflows uint16", up(pod1+"/config/mtu", uintv(70000)), codes.InvalidArgument, []string{pod1 + "/config/mtu"}},
	{"enabled as a string", up(pod1+"/config/enabled", str("yes")), codes.InvalidArgument, []string{pod1 + "/config/enabled"}},
	{"unknown enum value", up(green, ietf(`{"config":{"name":"green","type":"L2VRF","route-distinguisher":"65000:3"}}`)), codes.InvalidArgument, []string{green, "L2VRF"}},
	{"bad mac address", up(pod1+"/config/mac-address", str("zz:zz:zz:zz:zz:zz")), codes.InvalidArgument, []string{"mac-address"}},
	{"tunnel mtu below range", up(tunnelC+"/mtu", uintv(1000)), codes.InvalidArgument, []string{"mtu", "1000"}},
	{"udp port overflows", up(tunnelC+"/udp-port", uintv(70000)), codes.InvalidArgument, []string{tunnelC + "/udp-port"}},
	{"transport label below range", up(tunnelC+"/transport-label", uintv(5)), codes.InvalidArgument, []string{"transport-label", "5"}},
	{"tunnel source not an address", up(tunnelC+"/source-address", str("not-an-ip")), codes.InvalidArgument, []string{"source-address", "not-an-ip"}},
	{"tunnel source multicast", up(tunnelC+"/source-address", str("224.0.0.1")), codes.InvalidArgument, []string{"/tunnel/config/source-address", "unicast"}},
	{"hold-time outside its ranges", up(nbr+"/timers/config/hold-time", uintv(2)), codes.InvalidArgument, []string{"hold-time", "2"}},
	{"router-id not an address", up(bgp+"/global/config/router-id", str("1.2.3")), codes.InvalidArgument, []string{"router-id", "1.2.3"}},
	{"vrf name too long", up("/network-instances/network-instance[name=abcdefghijklmnopqrstuvwxyz0123456789]", ietf(`{"config":{"name":"abcdefghijklmnopqrstuvwxyz0123456789","type":"L3VRF","route-distinguisher":"65000:7"}}`)), codes.InvalidArgument, []string{"abcdefghijklmnopqrstuvwxyz0123456789"}},
	{"malformed json", up(red+"/config", ietf(`{"description": `)), codes.InvalidArgument, []string{red + "/config"}},
	{"json scalar for a container", up(red+"/config", ietf(`"x"`)), codes.InvalidArgument, []string{red + "/config"}},
	{"update without a value", func(t testing.TB) *gpb.SetRequest {
		return &gpb.SetRequest{Update: []*gpb.Update{{Path: mustPath(t, redRD)}}}
	}, codes.InvalidArgument, []string{redRD, "no value"}},

	// Route distinguishers and route targets.
	{"rd not asn:nn", up(redRD, str("abc")), codes.InvalidArgument, []string{"route-distinguisher", "abc"}},
	{"rd without number", up(redRD, str("65000")), codes.InvalidArgument, []string{"route-distinguisher", "65000"}},
	{"rd 2-byte asn number over 32 bits", up(redRD, str("65000:4294967296")), codes.InvalidArgument, []string{redRD, "4294967296"}},
	{"rd 4-byte asn number over 16 bits", up(redRD, str("4200000000:65536")), codes.InvalidArgument, []string{redRD, "65536"}},
	{"rd ipv4 number over 16 bits", up(redRD, str("10.0.0.1:70000")), codes.InvalidArgument, []string{redRD, "70000"}},
	{"rd asn over 32 bits", up(redRD, str("4294967296:1")), codes.InvalidArgument, []string{redRD, "4294967296"}},
	{"rd bad ipv4 administrator", up(redRD, str("300.1.1.1:1")), codes.InvalidArgument, []string{redRD, "300.1.1.1"}},
	{"import rt malformed", up(red+"/config/import-route-target", ietf(`["x:1"]`)), codes.InvalidArgument, []string{"import-route-target", "x:1"}},
	{"export rt out of range", up(red+"/config/export-route-target", ietf(`["65000:99999999999"]`)), codes.InvalidArgument, []string{red + "/config/export-route-target", "99999999999"}},
	{"one bad rt among good", up(red+"/config/import-route-target", ietf(`["65000:1","65001:x"]`)), codes.InvalidArgument, []string{"import-route-target", "65001:x"}},
	{"duplicate rd on a new vrf", up(green, ietf(vrfJSON("green", "65000:1", "10.3.0.0/24"))), codes.InvalidArgument, []string{"route-distinguisher", "65000:1", "already used"}},
	{"duplicate rd by changing one", up(blue+"/config/route-distinguisher", str("65000:1")), codes.InvalidArgument, []string{"route-distinguisher", "already used"}},
	{"l3vrf without rd", up(green, ietf(`{"config":{"name":"green","type":"L3VRF"}}`)), codes.InvalidArgument, []string{green + "/config/route-distinguisher", "needs a route distinguisher"}},
	{"delete the rd of a vrf", del(redRD), codes.InvalidArgument, []string{redRD, "needs a route distinguisher"}},
	{"vrf without type", up(green, ietf(`{"config":{"name":"green","route-distinguisher":"65000:3"}}`)), codes.InvalidArgument, []string{green + "/config/type", "type is required"}},
	{"vrf named default", up(vrfPath("default")+"/config/type", str("L3VRF")), codes.InvalidArgument, []string{vrfPath("default") + "/config", "DEFAULT"}},
	{"default type on another name", up(green, ietf(`{"config":{"name":"green","type":"DEFAULT"}}`)), codes.InvalidArgument, []string{green + "/config/type", "DEFAULT"}},
	{"rd on the default instance", up(vrfPath("default")+"/config/route-distinguisher", str("65000:9")), codes.InvalidArgument, []string{vrfPath("default") + "/config", "route distinguisher"}},

	// Pools.
	{"pool with host bits", up(green, ietf(vrfJSON("green", "65000:3", "10.3.0.1/24"))), codes.InvalidArgument, []string{green + "/address-pools/address-pool[prefix=10.3.0.1/24]", "host bits"}},
	{"pool too small", up(green, ietf(vrfJSON("green", "65000:3", "10.3.0.0/31"))), codes.InvalidArgument, []string{"address-pool[prefix=10.3.0.0/31]", "too small"}},
	{"pool not a prefix", up(green, ietf(vrfJSON("green", "65000:3", "10.3.0.0/33"))), codes.InvalidArgument, []string{"10.3.0.0/33"}},
	{"overlapping pools", up(red+"/address-pools/address-pool[prefix=10.1.0.0/16]/config/prefix", str("10.1.0.0/16")), codes.InvalidArgument, []string{red + "/address-pools/address-pool[prefix=10.1", "overlaps"}},
	{"pool in the default instance", up(vrfPath("default")+"/address-pools/address-pool[prefix=10.9.0.0/24]/config/prefix", str("10.9.0.0/24")), codes.InvalidArgument, []string{vrfPath("default") + "/address-pools/address-pool[prefix=10.9.0.0/24]", "L3VRF"}},

	// Interfaces and references.
	{"pod in a missing vrf", up(pod2, podJSON("pod2", "nosuch", "10.1.0.6/32")), codes.InvalidArgument, []string{"nosuch"}},
	{"pod without vrf", up(pod2, ietf(`{"config":{"name":"pod2","type":"POD"}}`)), codes.InvalidArgument, []string{pod2 + "/config/network-instance", "needs a network instance"}},
	{"pod in the default instance", up(pod2, podJSON("pod2", "default", "10.1.0.6/32")), codes.InvalidArgument, []string{pod2 + "/config/network-instance", "not an L3VRF"}},
	{"pod address not /32", up(pod2, podJSON("pod2", "red", "10.1.0.6/24")), codes.InvalidArgument, []string{pod2 + "/config/ipv4-address", "/32"}},
	{"pod address outside pools", up(pod2, podJSON("pod2", "red", "10.9.0.6/32")), codes.InvalidArgument, []string{pod2 + "/config/ipv4-address", "no address pool"}},
	{"pod address taken", up(pod2, podJSON("pod2", "red", "10.1.0.5/32")), codes.InvalidArgument, []string{pod2 + "/config/ipv4-address", "already used"}},
	{"interface without type", up(pod2, ietf(`{"config":{"name":"pod2"}}`)), codes.InvalidArgument, []string{pod2 + "/config/type", "type is required"}},
	{"underlay disabled", up("/interfaces/interface[name=eth0]/config/enabled", boolv(false)), codes.InvalidArgument, []string{"/interfaces/interface[name=eth0]/config/enabled", "only a POD interface"}},
	{"mac address on an underlay", up("/interfaces/interface[name=eth0]/config/mac-address", str("02:00:00:00:00:09")), codes.InvalidArgument, []string{"/interfaces/interface[name=eth0]/config/mac-address", "only a POD interface"}},
	{"underlay in a vrf", up("/interfaces/interface[name=eth0]/config/network-instance", str("red")), codes.InvalidArgument, []string{"/interfaces/interface[name=eth0]/config/network-instance", "UNDERLAY"}},
	{"delete a vrf a pod uses", del(red), codes.InvalidArgument, []string{"red"}},
	{"static route without interface", up(red+"/static-routes/static[prefix=10.8.0.0/24]/config/prefix", str("10.8.0.0/24")), codes.InvalidArgument, []string{red + "/static-routes/static[prefix=10.8.0.0/24]/config/interface", "needs the interface"}},
	{"static route with host bits", up(red+"/static-routes/static[prefix=10.8.0.1/24]/config", ietf(`{"prefix":"10.8.0.1/24","interface":"pod1"}`)), codes.InvalidArgument, []string{"static[prefix=10.8.0.1/24]", "host bits"}},
	{"static route via another vrf's pod", up(blue+"/static-routes/static[prefix=10.8.0.0/24]/config", ietf(`{"prefix":"10.8.0.0/24","interface":"pod1"}`)), codes.InvalidArgument, []string{blue + "/static-routes/static[prefix=10.8.0.0/24]/config/interface", "not in network instance"}},
	{"tunnel over a pod interface", up(tunnelC+"/underlay-interface", str("pod1")), codes.InvalidArgument, []string{"/tunnel/config/underlay-interface", "UNDERLAY"}},
	{"tunnel over a missing interface", up(tunnelC+"/underlay-interface", str("nosuch0")), codes.InvalidArgument, []string{"/tunnel/config/underlay-interface", "nosuch0", "does not exist"}},
	{"vrf bound to a missing acl set", up(red+"/config/tunnel-ingress-acl-set", ietf(`["nosuch-acl"]`)), codes.InvalidArgument, []string{red + "/config/tunnel-ingress-acl-set", "nosuch-acl"}},
	{"acl port range reversed", up(aclEntry, ietf(`{"sequence-id":10,"config":{"sequence-id":10,"protocol":6,"destination-port":443,"destination-port-end":80,"action":"ACCEPT"}}`)),
		codes.InvalidArgument, []string{aclEntry + "/config/destination-port-end", "443..80 is reversed"}},
	{"acl tag selector on an unknown key", up(aclEntry, ietf(`{"sequence-id":10,"config":{"sequence-id":10,"source-tag-selector":["tier=db"],"action":"ACCEPT"}}`)),
		codes.InvalidArgument, []string{aclEntry + "/config/source-tag-selector", `"tier" is not declared in /acl/tag-keys`}},
	{"acl reject-with on accept", up(aclEntry, ietf(`{"sequence-id":10,"config":{"sequence-id":10,"action":"ACCEPT","reject-with":"TCP_RESET"}}`)),
		codes.InvalidArgument, []string{aclEntry + "/config/reject-with", "needs action REJECT"}},
	{"address group scoped to a missing vrf", up("/acl/address-groups/address-group[name=dc]/config", ietf(`{"name":"dc","prefix":["10.9.0.0/16"],"network-instance":"nosuch"}`)),
		codes.InvalidArgument, []string{"/acl/address-groups/address-group[name=dc]/config/network-instance", `"nosuch" does not exist`}},

	// BGP.
	{"bgp in a vrf", up(red+"/protocols/protocol[identifier=BGP][name=bgp]", ietf(bgpJSON("bgp"))), codes.InvalidArgument, []string{red + "/protocols/protocol[identifier=BGP][name=bgp]", "DEFAULT"}},
	{"second bgp instance", up(vrfPath("default")+"/protocols/protocol[identifier=BGP][name=other]", ietf(bgpJSON("other"))), codes.InvalidArgument, []string{"protocol[identifier=BGP]", "only one BGP"}},
	{"bgp without as", del(bgp + "/global/config/as"), codes.InvalidArgument, []string{bgp + "/global/config/as", "AS"}},
	{"neighbor without peer-as", up(bgp+"/neighbors/neighbor[neighbor-address=192.0.2.3]/config/neighbor-address", str("192.0.2.3")), codes.InvalidArgument, []string{bgp + "/neighbors/neighbor[neighbor-address=192.0.2.3]/config/peer-as", "peer-as"}},
	{"keepalive not below hold-time", up(nbr+"/timers/config", ietf(`{"hold-time":30,"keepalive-interval":30}`)), codes.InvalidArgument, []string{nbr + "/timers/config/keepalive-interval", "hold-time"}},
	{"unknown protocol key", up(vrfPath("default")+"/protocols/protocol[identifier=OSPF][name=x]/config/name", str("x")), codes.InvalidArgument, []string{"OSPF"}},

	// Keys and duplicates.
	{"key differs from config name", up(green, ietf(`{"config":{"name":"purple","type":"L3VRF","route-distinguisher":"65000:3"}}`)), codes.InvalidArgument, []string{"green"}},
	{"duplicate list key in one value", up("/network-instances", ietf(`{"network-instance":[
		{"name":"green","config":{"name":"green","type":"L3VRF","route-distinguisher":"65000:3"}},
		{"name":"green","config":{"name":"green","type":"L3VRF","route-distinguisher":"65000:4"}}]}`)), codes.InvalidArgument, []string{"/network-instances"}},
	{"two vrfs with one rd in one request", up(green, ietf(vrfJSON("green", "65000:3", "10.3.0.0/24")), vrfPath("purple"), ietf(vrfJSON("purple", "65000:3", "10.4.0.0/24"))), codes.InvalidArgument, []string{"route-distinguisher", "65000:3", "already used"}},

	// Mixed valid and invalid operations: nothing applies.
	{"valid vrf then bad rd", up(green, ietf(vrfJSON("green", "65000:3", "10.3.0.0/24")), blue+"/config/route-distinguisher", str("bad")), codes.InvalidArgument, []string{"route-distinguisher", "bad"}},
	{"valid delete then bad update", func(t testing.TB) *gpb.SetRequest {
		return &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, blue)}, Update: []*gpb.Update{upd(t, redRD, str("65000:x"))}}
	}, codes.InvalidArgument, []string{redRD, "65000:x"}},
	{"valid delete then state in a value", func(t testing.TB) *gpb.SetRequest {
		return &gpb.SetRequest{Delete: []*gpb.Path{mustPath(t, blue)}, Update: []*gpb.Update{upd(t, pod1, ietf(`{"config":{"mtu":1500},"state":{"mtu":9000}}`))}}
	}, codes.InvalidArgument, []string{pod1 + "/state", "read-only"}},
	{"replace that drops the type", func(t testing.TB) *gpb.SetRequest {
		return &gpb.SetRequest{Replace: []*gpb.Update{upd(t, red+"/config", ietf(`{"name":"red","route-distinguisher":"65000:1"}`))}}
	}, codes.InvalidArgument, []string{red + "/config/type", "type is required"}},
	{"valid pod then pod outside pool", up(pod2, podJSON("pod2", "red", "10.1.0.6/32"), "/interfaces/interface[name=pod3]", podJSON("pod3", "blue", "10.1.0.7/32")), codes.InvalidArgument, []string{"/interfaces/interface[name=pod3]/config/ipv4-address", "no address pool"}},
	{"prefix plus bad relative path", func(t testing.TB) *gpb.SetRequest {
		return &gpb.SetRequest{Prefix: mustPath(t, red), Update: []*gpb.Update{upd(t, "/config/description", str("ok")), upd(t, "/config/bogus", str("x"))}}
	}, codes.InvalidArgument, []string{red + "/config/bogus"}},
}

// conformanceCases are the Set mistakes the gNMI specification and RFC
// 7951 say a server refuses: values that do not fit their leaf, module
// prefixes that are not the node's, state inside a config value, null.
var conformanceCases = []invalidCase{
	{"fraction for an integer", up(pod1+"/config/mtu", ietf(`1500.5`)), codes.InvalidArgument, []string{pod1 + "/config/mtu", "1500.5", "whole number"}},
	{"fraction inside a subtree", up(pod1+"/config", ietf(`{"mtu":1400.7}`)), codes.InvalidArgument, []string{pod1 + "/config/mtu", "1400.7", "whole number"}},
	{"fraction as double_val", up(pod1+"/config/mtu", &gpb.TypedValue{Value: &gpb.TypedValue_DoubleVal{DoubleVal: 1500.5}}), codes.InvalidArgument, []string{pod1 + "/config/mtu", "whole number"}},
	{"exponent for an integer", up(tunnelC+"/udp-port", ietf(`6.635e3`)), codes.InvalidArgument, []string{tunnelC + "/udp-port", "whole number"}},
	{"negative for unsigned", up(pod1+"/config/mtu", ietf(`-1500`)), codes.InvalidArgument, []string{pod1 + "/config/mtu", "-1500", "range"}},
	{"string for a number", up(pod1+"/config/mtu", ietf(`"1500"`)), codes.InvalidArgument, []string{pod1 + "/config/mtu", "number"}},
	{"string for a boolean", up(pod1+"/config/enabled", ietf(`"true"`)), codes.InvalidArgument, []string{pod1 + "/config/enabled", "true or false"}},
	{"object for a leaf", up(pod1+"/config/mtu", ietf(`{"value":1500}`)), codes.InvalidArgument, []string{pod1 + "/config/mtu", "object"}},
	{"bytes for a string", up(red+"/config/description", &gpb.TypedValue{Value: &gpb.TypedValue_BytesVal{BytesVal: []byte("x")}}), codes.InvalidArgument, []string{red + "/config/description", "bytes_val"}},
	{"two JSON values", up(red+"/config", ietf(`{"description":"a"} {}`)), codes.InvalidArgument, []string{red + "/config", "more than one"}},
	{"wrong module prefix", up(pod1, ietf(`{"isthmus-bgp:config":{"mtu":1500}}`)), codes.InvalidArgument, []string{pod1 + "/config", "isthmus-interfaces", "isthmus-bgp"}},
	{"unknown module prefix", up(pod1, ietf(`{"nosuch:config":{"mtu":1500}}`)), codes.InvalidArgument, []string{pod1 + "/config", "nosuch"}},
	{"wrong prefix deep inside", up(red, ietf(`{"config":{"isthmus-acl:description":"x"}}`)), codes.InvalidArgument, []string{red + "/config/description", "isthmus-network-instance"}},
	{"state beside config", up(pod1, ietf(`{"config":{"mtu":1500},"state":{"mtu":9000}}`)), codes.InvalidArgument, []string{pod1 + "/state", "read-only"}},
	{"state counters in a vrf", up(red, ietf(`{"config":{"name":"red","type":"L3VRF","route-distinguisher":"65000:1"},"state":{"counters":{"no-route":"1"}}}`)), codes.InvalidArgument, []string{red + "/state", "read-only"}},
	{"state at the root", up("/", ietf(`{"isthmus-system:system":{"state":{"revision":"9"}}}`)), codes.InvalidArgument, []string{"/system", "read-only"}},
	{"null leaf", up(red+"/config/description", ietf(`null`)), codes.InvalidArgument, []string{red + "/config/description", "null"}},
	{"null member", up(red+"/config", ietf(`{"description":null}`)), codes.InvalidArgument, []string{red + "/config/description", "null"}},
	{"null in a leaf-list", up(red+"/config/import-route-target", ietf(`[null]`)), codes.InvalidArgument, []string{red + "/config/import-route-target", "null"}},
	{"null container", up(red, ietf(`null`)), codes.InvalidArgument, []string{red, "null"}},
	{"acl source with host bits", up("/acl/acl-sets/acl-set[name=web]", ietf(`{"config":{"name":"web"},"acl-entries":{"acl-entry":[{"sequence-id":10,"config":{"sequence-id":10,"source-address":"10.0.0.1/24","action":"ACCEPT"}}]}}`)),
		codes.InvalidArgument, []string{"/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=10]/config/source-address", "host bits"}},
	{"acl destination with host bits", up("/acl/acl-sets/acl-set[name=web]", ietf(`{"config":{"name":"web"},"acl-entries":{"acl-entry":[{"sequence-id":10,"config":{"sequence-id":10,"destination-address":"192.0.2.1/30","action":"DROP"}}]}}`)),
		codes.InvalidArgument, []string{"acl-entry[sequence-id=10]/config/destination-address", "192.0.2.1/30", "host bits"}},
	{"list key of the wrong type", up("/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=ten]/config/action", str("DROP")), codes.InvalidArgument, []string{"acl-entry[sequence-id=ten]", "whole number"}},
	{"enum key not in the enumeration", up(vrfPath("default")+"/protocols/protocol[identifier=OSPF][name=x]/config/name", str("x")), codes.InvalidArgument, []string{"protocol[identifier=OSPF]", "BGP"}},
	{"long bad value is clipped", up(redRD, str(strings.Repeat("x", 5000))), codes.InvalidArgument, []string{redRD, "5000 bytes"}},
	{"long unknown member is clipped", up(red+"/config", ietf(`{"`+strings.Repeat("y", 3000)+`":1}`)), codes.InvalidArgument, []string{red + "/config", "unknown element"}},
}

// internals are what a message must never show a gNMI client: Go type
// names, ygot's schema paths, protobuf field dumps.
var internals = regexp.MustCompile(`\bgen\.|\*gnmi|gnmi\.|ytypes|ygot|/device/|\bstruct\b|_val:|TypedValue|map\[|interface \{`)

// TestSetInvalid sends every invalid request, checks its code and that its
// message names the path and the reason, and proves with a Get that the
// configuration did not change.
func TestSetInvalid(t *testing.T) {
	if len(invalidCases) < 50 {
		t.Fatalf("only %d invalid cases", len(invalidCases))
	}
	e := newTestEnv(t)
	baseConfig(t, e)
	before := e.configJSON(t)
	revision := e.core.Revision()
	restore := func(t *testing.T) {
		if _, err := e.cli.Set(admin(), &gpb.SetRequest{Replace: []*gpb.Update{upd(t, "/", ietf(before))}}); err != nil {
			t.Errorf("restore base configuration: %v", err)
		}
		revision = e.core.Revision()
	}
	for _, tc := range append(append([]invalidCase{}, invalidCases...), conformanceCases...) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.cli.Set(admin(), tc.req(t))
			st, _ := status.FromError(err)
			if err == nil {
				restore(t)
				t.Fatalf("accepted; want %s", tc.code)
			}
			t.Logf("%s: %s", st.Code(), st.Message())
			if st.Code() != tc.code {
				t.Errorf("code = %s, want %s (%s)", st.Code(), tc.code, st.Message())
			}
			for _, w := range tc.want {
				if !strings.Contains(st.Message(), w) {
					t.Errorf("message %q does not contain %q", st.Message(), w)
				}
			}
			if internals.MatchString(st.Message()) {
				t.Errorf("message %q shows implementation details", st.Message())
			}
			if len(st.Message()) > 400 {
				t.Errorf("message is %d bytes long: a bad value is echoed whole", len(st.Message()))
			}
			if after := e.configJSON(t); after != before || e.core.Revision() != revision {
				// Put the base back so later cases start from it.
				restore(t)
				t.Fatalf("configuration changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}
