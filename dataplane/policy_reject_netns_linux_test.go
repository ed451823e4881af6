package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// TestPolicyRejectOverTunnelNamespaces: host b's pod rejects TCP port 7
// with a reset and UDP port 9 with an ICMP unreachable; host a's pod,
// across the tunnel, gets "connection refused" on connect and "no route
// to host" on its connected UDP socket at once, instead of waiting out a
// timeout. Over MPLSoUDP and MPLSoMPLS (decapsulated in XDP).
func TestPolicyRejectOverTunnelNamespaces(t *testing.T) {
	for _, mplsOverMPLS := range []bool{false, true} {
		name := "mpls-over-udp"
		if mplsOverMPLS {
			name = "mpls-over-mpls"
		}
		t.Run(name, func(t *testing.T) { rejectOverTunnelNamespaces(t, mplsOverMPLS) })
	}
}

func rejectOverTunnelNamespaces(t *testing.T, mplsOverMPLS bool) {
	var extra func(int, *gen.Device)
	encap := nos.EncapMPLSoUDP
	if mplsOverMPLS {
		encap = nos.EncapMPLSoMPLS
		extra = func(i int, d *gen.Device) {
			d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red").GetOrCreateConfig().Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
			other := []string{"192.0.2.1", "192.0.2.2"}[1-i]
			d.GetOrCreateTunnel().GetOrCreateNeighbors().GetOrCreateNeighbor(other).GetOrCreateConfig().Address = ygot.String(other)
		}
	}
	a, b, addrs := newCoreHosts(t, extra)
	labelA, err := a.core.Labels().VRF("red")
	must(t, err)
	labelB, err := b.core.Labels().Prefix("red", netip.PrefixFrom(b.pod.addr, 32))
	must(t, err)
	a.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.2.0.2/32")},
		NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: labelB, Encap: encap}}}}})
	b.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.0/24")},
		NextHops: []nos.NextHop{{Endpoint: addrs[0], Label: labelA, Encap: encap}}}}})
	waitPing(t, a.pod, b.pod.addr, true)

	b.commit(t, func(d *gen.Device) error {
		set := d.GetOrCreateAcl().GetOrCreateAclSets().GetOrCreateAclSet("rej-in")
		set.GetOrCreateConfig().Name = ygot.String("rej-in")
		entry := func(seq uint32, proto uint8, port uint16, action gen.E_IsthmusAcl_AclAction, with gen.E_IsthmusAcl_RejectKind) {
			e := set.GetOrCreateAclEntries().GetOrCreateAclEntry(seq).GetOrCreateConfig()
			e.SequenceId, e.Protocol, e.Action, e.RejectWith = ygot.Uint32(seq), ygot.Uint8(proto), action, with
			if port != 0 {
				e.DestinationPort = ygot.Uint16(port)
			}
		}
		entry(10, 6, 7, gen.IsthmusAcl_AclAction_REJECT, gen.IsthmusAcl_RejectKind_TCP_RESET)
		entry(20, 17, 9, gen.IsthmusAcl_AclAction_REJECT, gen.IsthmusAcl_RejectKind_ICMP_UNREACHABLE)
		entry(30, 1, 0, gen.IsthmusAcl_AclAction_ACCEPT, 0)
		d.GetOrCreateInterfaces().GetOrCreateInterface(b.pod.hostIf).GetOrCreateAcl().GetOrCreateConfig().IngressAclSet = []string{"rej-in"}
		return nil
	})
	waitPing(t, a.pod, b.pod.addr, true)

	err = a.pod.ns.do(func() error {
		start := time.Now()
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(b.pod.addr, 7).String(), 5*time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("connect to port 7: connected, want refused")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("connect to port 7 after %v: %w, want connection refused", time.Since(start), err)
		}
		u, err := net.Dial("udp", netip.AddrPortFrom(b.pod.addr, 9).String())
		if err != nil {
			return err
		}
		defer u.Close()
		var last error
		for range 10 {
			if _, err := u.Write([]byte("discard")); err != nil {
				last = err
			} else {
				u.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				_, last = u.Read(make([]byte, 64))
			}
			if errors.Is(last, syscall.EHOSTUNREACH) {
				return nil
			}
		}
		return fmt.Errorf("udp to port 9: %v, want no route to host (ICMP unreachable, code 13)", last)
	})
	if err != nil {
		t.Fatal(err)
	}
	must(t, b.rec.PublishState())
	err = b.core.Read(func(_, state *gen.Device) error {
		c := nos.NetworkInstances(state)["red"].GetState().GetCounters()
		if c.GetTunnelRejectsSent() < 2 || c.TunnelRejectsUnsent == nil || c.GetTunnelRejectsUnsent() != 0 {
			return fmt.Errorf("host b's red counters: tunnel-rejects-sent %d, unsent %v; want at least 2 sent, none unsent",
				c.GetTunnelRejectsSent(), c.TunnelRejectsUnsent)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	counters := getState(t, b.core, "/network-instances/network-instance[name=red]/state/counters", true)
	if js := fmt.Sprint(counters); !strings.Contains(js, `"isthmus-acl-flows:tunnel-rejects-sent"`) {
		t.Errorf("JSON_IETF Get of red's counters %s: no isthmus-acl-flows:tunnel-rejects-sent", js)
	}

	// The verdicts through gNMI: a Get of host b's acl-flows reads the
	// flow table at the request and names the entry that decided and
	// where.
	got := getState(t, b.core, "/network-instances/network-instance[name=red]/state/acl-flows")
	from, to := "source-address="+a.pod.addr.String(), "destination-address="+b.pod.addr.String()
	for _, c := range []struct {
		terms            []string
		verdict, decided string
		deniedAt, ifname string
	}{
		{[]string{"protocol=6", from, to, "destination-port=7"}, "REJECT", "rej-in/10", "INGRESS", b.pod.hostIf},
		{[]string{"protocol=17", from, to, "destination-port=9"}, "REJECT", "rej-in/20", "INGRESS", b.pod.hostIf},
		{[]string{"protocol=1", from, to}, "ALLOW", "rej-in/30", "", ""},
	} {
		l := aclFlowLeaves(got, c.terms...)
		want := map[string]string{"verdict": c.verdict, "decided-by": c.decided, "denied-at": c.deniedAt, "interface": c.ifname, "reply": "false"}
		for leaf, v := range want {
			if v == "" {
				if len(l[leaf]) != 0 {
					t.Errorf("flow %v: %s %v, want none", c.terms, leaf, l[leaf])
				}
				continue
			}
			if len(l[leaf]) == 0 || l[leaf][0] != v {
				t.Errorf("flow %v: %s %v, want %s (acl-flows %v)", c.terms, leaf, l[leaf], v, got)
			}
		}
	}
}
