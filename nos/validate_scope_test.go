package nos

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// scopeBase is a configuration where entries refer to each other in every
// way a rule checks: VRF a (pool 10.1.0.0/24, a static route through the
// not yet attached pod9) with pod p1 (ACL set web, whose entry uses
// address group dc) and CNI namespace shop; VRF b with a service whose
// backend 10.3.0.7 lies outside every pool; VRF e, the default pod
// network (SNAT ports 20000..20999 from the tunnel source, host access,
// pool 10.5.0.0/24); VRF f with CNI namespace shop2; VRF g, which only
// address group remote is scoped to.
func scopeBase() *gen.Device {
	d := &gen.Device{}
	vrf := func(name, rd, pool string) *gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance {
		ni := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance(name)
		c := ni.GetOrCreateConfig()
		c.Name, c.Type, c.RouteDistinguisher = ygot.String(name), gen.IsthmusTypes_NetworkInstanceType_L3VRF, ygot.String(rd)
		ni.GetOrCreateAddressPools().GetOrCreateAddressPool(pool).GetOrCreateConfig().Prefix = ygot.String(pool)
		return ni
	}
	a := vrf("a", "65000:1", "10.1.0.0/24")
	r := a.GetOrCreateStaticRoutes().GetOrCreateStatic("10.9.0.0/24").GetOrCreateConfig()
	r.Prefix, r.Interface = ygot.String("10.9.0.0/24"), ygot.String("pod9")
	b := vrf("b", "65000:2", "10.2.0.0/24")
	addService(b, "web", "10.96.0.10", gen.IsthmusNetworkInstance_ServiceProtocol_TCP, 80)
	addBackend(b, "web", "10.3.0.7", 8080)
	e := vrf("e", "65000:5", "10.5.0.0/24")
	ec := e.GetOrCreateExternal().GetOrCreateConfig()
	ec.DefaultPodNetwork, ec.PortMin, ec.PortMax = ygot.Bool(true), ygot.Uint16(20000), ygot.Uint16(20999)
	vrf("f", "65000:6", "10.6.0.0/24")
	vrf("g", "65000:8", "10.8.0.0/24")

	p1 := d.GetOrCreateInterfaces().GetOrCreateInterface("p1")
	pc := p1.GetOrCreateConfig()
	pc.Name, pc.Type, pc.NetworkInstance, pc.Ipv4Address = ygot.String("p1"), gen.IsthmusTypes_InterfaceType_POD, ygot.String("a"), ygot.String("10.1.0.5/32")
	p1.GetOrCreateAcl().GetOrCreateConfig().IngressAclSet = []string{"web"}

	g := d.GetOrCreateAcl().GetOrCreateAddressGroups().GetOrCreateAddressGroup("dc").GetOrCreateConfig()
	g.Name, g.Prefix = ygot.String("dc"), []string{"10.9.0.0/16"}
	rg := d.GetOrCreateAcl().GetOrCreateAddressGroups().GetOrCreateAddressGroup("remote").GetOrCreateConfig()
	rg.Name, rg.Prefix, rg.NetworkInstance = ygot.String("remote"), []string{"10.8.9.0/24"}, ygot.String("g")
	set := d.GetOrCreateAcl().GetOrCreateAclSets().GetOrCreateAclSet("web")
	set.GetOrCreateConfig().Name = ygot.String("web")
	ac := set.GetOrCreateAclEntries().GetOrCreateAclEntry(10).GetOrCreateConfig()
	ac.SequenceId, ac.SourceAddressGroup, ac.Action = ygot.Uint32(10), ygot.String("dc"), gen.IsthmusAcl_AclAction_ACCEPT

	for ns, vrf := range map[string]string{"shop": "a", "shop2": "f"} {
		c := d.GetOrCreateCni().GetOrCreateNamespaces().GetOrCreateNamespace(ns).GetOrCreateConfig()
		c.Name, c.NetworkInstance = ygot.String(ns), ygot.String(vrf)
	}
	d.GetOrCreateTunnel().GetOrCreateConfig().SourceAddress = ygot.String("192.0.2.1")
	// SNAT (VRF e) needs the underlay, where replies arrive.
	ul := d.GetOrCreateInterfaces().GetOrCreateInterface("ul").GetOrCreateConfig()
	ul.Name, ul.Type = ygot.String("ul"), gen.IsthmusTypes_InterfaceType_UNDERLAY
	d.Tunnel.Config.UnderlayInterface = ygot.String("ul")
	return d
}

// TestScopedValidationSeesUntouchedEntries sends Sets that are invalid
// only because of an entry they do not name: each is refused, with the
// error that validating every entry gives, and the configuration stays
// as it was.
func TestScopedValidationSeesUntouchedEntries(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	if _, err := c.Commit(ctx, "t", func(cand *gen.Device) error {
		*cand = *scopeBase()
		return nil
	}); err != nil {
		t.Fatalf("commit the base: %v", err)
	}
	const ni = "/network-instances/network-instance"
	newVRF := func(name, rd, pool, external string) *gpb.Update {
		js := fmt.Sprintf(`{"config":{"name":%q,"type":"L3VRF","route-distinguisher":%q},"address-pools":{"address-pool":[{"prefix":%q,"config":{"prefix":%q}}]}%s}`, name, rd, pool, pool, external)
		return jsonUpdate(t, fmt.Sprintf("%s[name=%s]", ni, name), js)
	}
	upd := func(u ...*gpb.Update) *gpb.SetRequest { return &gpb.SetRequest{Update: u} }
	del := func(paths ...string) *gpb.SetRequest {
		req := &gpb.SetRequest{}
		for _, p := range paths {
			req.Delete = append(req.Delete, mustPath(t, p))
		}
		return req
	}
	for _, tc := range []struct {
		name     string
		req      *gpb.SetRequest
		wantPath string
		wantText string
	}{
		{"route distinguisher of another VRF", upd(newVRF("c", "65000:1", "10.7.0.0/24", "")),
			ni + "[name=c]/config/route-distinguisher", `already used by network instance "a"`},
		{"pool that held a pod goes", &gpb.SetRequest{Replace: []*gpb.Update{jsonUpdate(t, ni+"[name=a]/address-pools",
			`{"address-pool":[{"prefix":"10.7.0.0/24","config":{"prefix":"10.7.0.0/24"}}]}`)}},
			"/interfaces/interface[name=p1]/config/ipv4-address", "in no address pool"},
		{"VRF of a pod deleted", del(ni + "[name=a]"),
			"/interfaces/interface[name=p1]/config/network-instance", `"a" does not exist`},
		{"VRF of a CNI namespace deleted", del(ni + "[name=f]"),
			"/cni/namespaces/namespace[name=shop2]/config/network-instance", `"f" does not exist`},
		{"address of another pod", upd(jsonUpdate(t, "/interfaces/interface[name=p2]/config", `{"name":"p2","type":"POD","network-instance":"a","ipv4-address":"10.1.0.5/32"}`)),
			"/interfaces/interface[name=p2]/config/ipv4-address", `already used by interface "p1"`},
		{"interface a static route waits for, in another VRF", upd(jsonUpdate(t, "/interfaces/interface[name=pod9]/config", `{"name":"pod9","type":"POD","network-instance":"b","ipv4-address":"10.2.0.9/32"}`)),
			ni + "[name=a]/static-routes/static[prefix=10.9.0.0/24]/config/interface", `"pod9" is not in network instance "a"`},
		{"ACL set a pod attaches deleted", del("/acl/acl-sets/acl-set[name=web]"),
			"/interfaces/interface[name=p1]/acl/config/ingress-acl-set", `ACL set "web" does not exist`},
		{"VRF an address group is scoped to deleted", del(ni + "[name=g]"),
			"/acl/address-groups/address-group[name=remote]/config/network-instance", `network instance "g" does not exist`},
		{"address group an ACL entry uses deleted", del("/acl/address-groups/address-group[name=dc]"),
			"/acl/acl-sets/acl-set[name=web]/acl-entries/acl-entry[sequence-id=10]/config/source-address-group", `"dc" does not exist`},
		{"pool around another VRF's backend", upd(newVRF("c", "65000:7", "10.3.0.0/24", "")),
			ni + "[name=b]/services/service[name=web]/backends/backend[address=10.3.0.7][port=8080]/config/address", `in pool 10.3.0.0/24 of network instance "c"`},
		{"second default pod network", upd(newVRF("c", "65000:7", "10.7.0.0/24", `,"external":{"config":{"default-pod-network":true,"port-min":30000,"port-max":30999}}`)),
			ni + "[name=c]/external/config/default-pod-network", `"e" is already the default pod network`},
		{"SNAT ports of another VRF", upd(newVRF("c", "65000:7", "10.7.0.0/24", `,"external":{"config":{"mode":"SNAT","port-min":20500,"port-max":21500}}`)),
			ni + "[name=c]/external/config/port-min", `of network instance "e"`},
		{"host access on a pool over another's", upd(newVRF("c", "65000:7", "10.5.0.0/16", `,"external":{"config":{"host-access":true}}`)),
			ni + "[name=e]/external/config/host-access", `overlaps pool 10.5.0.0/16 of network instance "c"`},
		{"tunnel source a SNAT VRF relies on deleted", del("/tunnel"),
			ni + "[name=e]/external/config/snat-address", "needs an address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := encodeConfig(c.Config())
			rev := c.Revision()
			// What validating every entry says of the same candidate.
			cand := c.Config()
			if err := c.edit(cand, tc.req); err != nil {
				t.Fatalf("edit: %v", err)
			}
			full := validateSemantics(c.Config(), cand)

			_, err := c.Set(ctx, "t", tc.req)
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalid) || pe.Path != tc.wantPath || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("err = %v\nwant %s: ...%s...", err, tc.wantPath, tc.wantText)
			}
			if full == nil || full.Error() != err.Error() {
				t.Fatalf("the Set says %v\nvalidating every entry says %v", err, full)
			}
			if after, _ := encodeConfig(c.Config()); string(after) != string(before) || c.Revision() != rev {
				t.Fatal("a refused Set changed the configuration")
			}
		})
	}
}

// TestRefIndexFollowsCommits checks that the index, updated commit by
// commit with what each changed, always equals one built afresh from the
// running configuration, so that validation after many commits relates
// what it should.
func TestRefIndexFollowsCommits(t *testing.T) {
	ctx := context.Background()
	c := newTestCore(t, t.TempDir())
	flat := func(ix *refIndex) string {
		var out []string
		for name, m := range map[string]map[string]entrySet{"keyed": ix.keyed, "probed": ix.probed} {
			for tok, ids := range m {
				ids.each(func(id entryID) { out = append(out, fmt.Sprintf("%s %s %d/%s", name, tok, id.list, id.name)) })
			}
		}
		sort.Strings(out)
		return strings.Join(out, "\n")
	}
	check := func(step string) {
		t.Helper()
		var fresh *refIndex
		c.Read(func(cfg, _ *gen.Device) error { fresh = newRefIndex(cfg); return nil })
		if got, want := flat(c.refs), flat(fresh); got != want {
			t.Fatalf("%s: index\n%s\nwant\n%s", step, got, want)
		}
	}
	if _, err := c.Commit(ctx, "t", func(cand *gen.Device) error { *cand = *scopeBase(); return nil }); err != nil {
		t.Fatal(err)
	}
	check("base")
	for i, req := range []*gpb.SetRequest{
		{Update: []*gpb.Update{vrfUpdate(t, "g", 9), vrfUpdate(t, "h", 10)}},
		{Update: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=g]/config/route-distinguisher", `"65000:99"`)}},
		{Update: []*gpb.Update{jsonUpdate(t, "/interfaces/interface[name=p2]/config", `{"name":"p2","type":"POD","network-instance":"a","ipv4-address":"10.1.0.6/32"}`)}},
		{Delete: []*gpb.Path{mustPath(t, "/interfaces/interface[name=p2]"), mustPath(t, "/network-instances/network-instance[name=h]")}},
		{Replace: []*gpb.Update{jsonUpdate(t, "/network-instances/network-instance[name=g]/address-pools",
			`{"address-pool":[{"prefix":"10.77.0.0/16","config":{"prefix":"10.77.0.0/16"}}]}`)}},
		{Delete: []*gpb.Path{mustPath(t, "/cni"), mustPath(t, "/network-instances/network-instance[name=f]")}},
	} {
		if _, err := c.Set(ctx, "t", req); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		check(fmt.Sprintf("step %d", i))
	}
	if _, err := c.Rollback(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	check("rollback")
}
