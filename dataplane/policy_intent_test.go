package dataplane

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// policyDevice builds a configuration from RFC 7951 JSON.
func policyDevice(t *testing.T, js string) *gen.Device {
	t.Helper()
	d := &gen.Device{}
	if err := gen.Unmarshal([]byte(js), d); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return d
}

func pod(name, addr string, tags map[string]string, acl string) map[string]any {
	var ts []map[string]any
	for k, v := range tags {
		ts = append(ts, map[string]any{"key": k, "config": map[string]any{"key": k, "value": v}})
	}
	p := map[string]any{"name": name, "config": map[string]any{"name": name, "type": "POD", "network-instance": "red", "ipv4-address": addr}}
	if ts != nil {
		p["tags"] = map[string]any{"tag": ts}
	}
	if acl != "" {
		p["acl"] = json.RawMessage(acl)
	}
	return p
}

func policyConfig(t *testing.T, pods ...map[string]any) *gen.Device {
	t.Helper()
	doc := map[string]any{
		"isthmus-network-instance:network-instances": map[string]any{"network-instance": []any{
			map[string]any{"name": "red", "config": map[string]any{"name": "red", "type": "L3VRF", "tunnel-ingress-acl-set": []string{"db"}}},
		}},
		"isthmus-interfaces:interfaces": map[string]any{"interface": pods},
		"isthmus-acl:acl": json.RawMessage(`{
			"tag-keys":{"tag-key":[{"name":"app","config":{"name":"app"}},{"name":"tier","config":{"name":"tier"}}]},
			"address-groups":{"address-group":[
				{"name":"dc","config":{"name":"dc","prefix":["10.9.0.0/16"],"except":["10.9.128.0/17"]}},
				{"name":"remote-db","config":{"name":"remote-db","prefix":["10.2.0.7/32"]},"tags":{"tag":[{"key":"app","config":{"key":"app","value":"db"}}]}}]},
			"acl-sets":{"acl-set":[
				{"name":"db","config":{"name":"db"},"acl-entries":{"acl-entry":[
					{"sequence-id":10,"config":{"sequence-id":10,"source-tag-selector":["app=web","tier!=test"],"protocol":6,"destination-port":5432,"action":"ACCEPT"}},
					{"sequence-id":30,"config":{"sequence-id":30,"source-address-group":"dc","protocol":17,"destination-port":53,"destination-port-end":54,"action":"REJECT","reject-with":"ICMP_UNREACHABLE"}}]}},
				{"name":"web","config":{"name":"web"},"acl-entries":{"acl-entry":[
					{"sequence-id":20,"config":{"sequence-id":20,"destination-tag-selector":["app=db"],"action":"ACCEPT"}}]}}]}}`),
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return policyDevice(t, string(b))
}

// TestPolicyOf: sets merge in sequence order, address groups lose their
// except prefixes, tag selectors resolve to the pods (and tagged groups)
// that carry the tags, and follow pods as they come and go.
func TestPolicyOf(t *testing.T) {
	acl := `{"config":{"ingress-acl-set":["db","web"],"egress-acl-set":["web"],"egress-default-action":"ACCEPT"}}`
	d := policyConfig(t,
		pod("db1", "10.1.0.10/32", map[string]string{"app": "db"}, acl),
		pod("web1", "10.1.0.20/32", map[string]string{"app": "web"}, ""),
		pod("web2", "10.1.0.21/32", map[string]string{"app": "web", "tier": "test"}, ""),
	)
	p, err := policyOf(d)
	if err != nil {
		t.Fatal(err)
	}
	in := p.Interfaces["db1"].Ingress
	want := &Attachment{Default: PolicyDrop, Rules: []PolicyRule{
		{Sources: pfx("10.1.0.20/32"), Protocol: 6, DestinationPorts: PortRange{5432, 5432}, Action: PolicyAccept, Entry: "db/10"},
		{Destinations: pfx("10.1.0.10/32", "10.2.0.7/32"), Action: PolicyAccept, Entry: "web/20"},
		{Sources: pfx("10.9.0.0/17"), Protocol: 17, DestinationPorts: PortRange{53, 54}, Action: PolicyReject, Reject: RejectICMP, Entry: "db/30"},
	}}
	if diff := cmp.Diff(want, in, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("db1 ingress (-want +got):\n%s", diff)
	}
	if eg := p.Interfaces["db1"].Egress; eg == nil || eg.Default != PolicyAccept || len(eg.Rules) != 1 {
		t.Errorf("db1 egress = %+v, want web's entry with default ACCEPT", eg)
	}
	if p.Tunnel["red"] == nil || len(p.Tunnel["red"].Rules) != 2 {
		t.Errorf("red tunnel ingress = %+v, want db's two entries", p.Tunnel["red"])
	}
	if _, ok := p.Interfaces["web1"]; ok {
		t.Errorf("web1 has no sets and no default, but got %+v", p.Interfaces["web1"])
	}
	// A web pod comes, one goes: the selector follows.
	d = policyConfig(t,
		pod("db1", "10.1.0.10/32", map[string]string{"app": "db"}, acl),
		pod("web2", "10.1.0.21/32", map[string]string{"app": "web"}, ""),
		pod("web3", "10.1.0.22/32", map[string]string{"app": "web"}, ""),
	)
	p, err = policyOf(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Interfaces["db1"].Ingress.Rules[0].Sources; !cmp.Equal(got, pfx("10.1.0.21/32", "10.1.0.22/32"), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("app=web after the change = %v, want web2 and web3", got)
	}
	// No web pod at all: the entry matches nothing (not everything).
	d = policyConfig(t, pod("db1", "10.1.0.10/32", map[string]string{"app": "db"}, acl))
	p, err = policyOf(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Interfaces["db1"].Ingress.Rules[0].Sources; got == nil || len(got) != 0 {
		t.Errorf("app=web without web pods = %#v, want an empty (not nil) list", got)
	}
}

func TestSubtractPrefixes(t *testing.T) {
	got := subtractPrefixes(pfx("10.0.0.0/24"), pfx("10.0.0.64/26", "10.0.0.5/32"))
	want := pfx("10.0.0.0/30", "10.0.0.4/32", "10.0.0.6/31", "10.0.0.8/29", "10.0.0.16/28", "10.0.0.32/27", "10.0.0.128/25")
	if !cmp.Equal(got, want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPortBlocks(t *testing.T) {
	for _, c := range []struct{ first, last uint16 }{{0, 65535}, {80, 80}, {1000, 2000}, {1, 65534}, {5432, 5440}} {
		covered := 0
		for _, b := range portBlocks(c.first, c.last) {
			size := 1 << (16 - b.bits)
			if int(b.value)%size != 0 || int(b.value) < int(c.first) || int(b.value)+size-1 > int(c.last) {
				t.Fatalf("%d..%d: block %+v out of range or unaligned", c.first, c.last, b)
			}
			covered += size
		}
		if covered != int(c.last)-int(c.first)+1 {
			t.Errorf("%d..%d: blocks cover %d ports", c.first, c.last, covered)
		}
	}
}

// TestPolicyAcceptsFloatingIPOfIsolatedPod: a floating IP may be bound to
// a pod isolated for ingress (flows through it pass the pod's ingress,
// TestPolicyFloatingIngressExact); the pod keeps its attachment.
func TestPolicyAcceptsFloatingIPOfIsolatedPod(t *testing.T) {
	acl := `{"config":{"ingress-acl-set":["db"]}}`
	d := policyConfig(t, pod("db1", "10.1.0.10/32", map[string]string{"app": "db"}, acl))
	fip := d.GetNetworkInstances().GetNetworkInstance("red").GetOrCreateExternal().GetOrCreateFloatingIps().GetOrCreateFloatingIp("198.51.100.10")
	fip.GetOrCreateConfig().PodAddress = ygot.String("10.1.0.10")
	in, err := policyOf(d)
	if err != nil {
		t.Fatalf("floating IP of a pod with ingress sets: %v", err)
	}
	if in.Interfaces["db1"].Ingress == nil {
		t.Errorf("pod db1 lost its ingress attachment: %+v", in.Interfaces)
	}
}
