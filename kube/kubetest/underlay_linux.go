package kubetest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
)

// Connect lets the nodes (and reflectors) reach each other's addresses,
// their tunnel sources and BGP endpoints, through the host: forwarding is
// turned on for the host ends of their veth pairs only (they go with the
// test; the host's own forwarding setting is left as it is), and each
// node's namespace gets a route to every other node's address via its
// host end.
func Connect(t testing.TB, nodes ...*Node) {
	t.Helper()
	for _, nd := range nodes {
		ifname, err := hostEnd(nd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+ifname+"/forwarding", []byte("1"), 0o644); err != nil {
			t.Fatalf("forwarding on %s: %v", ifname, err)
		}
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			out, err := exec.Command("ip", "-n", a.netns, "route", "replace", b.Addr.String()+"/32", "via", hostAddr(a).String()).CombinedOutput()
			if err != nil {
				t.Fatalf("route from %s to %s: %v: %s", a.Name, b.Name, err, out)
			}
		}
	}
}

// hostAddr is the host end's address of a node's veth pair (.1 of its /30).
func hostAddr(nd *Node) netip.Addr {
	b := nd.Addr.As4()
	b[3]--
	return netip.AddrFrom4(b)
}

// hostEnd finds the host's interface that holds the host end's address.
func hostEnd(nd *Node) (string, error) {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show", "to", hostAddr(nd).String()+"/32").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("find host end of %s: %v: %s", nd.Name, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "", fmt.Errorf("find host end of %s: no interface has %s", nd.Name, hostAddr(nd))
	}
	name, _, _ := strings.Cut(f[1], "@")
	return name, nil
}

// UseUnderlay makes the node's veth to the host its underlay interface, the
// one tunnelled packets leave by (StartBGP sets only the tunnel source),
// so that its pods reach the pods of the nodes Connect joined it to.
func (nd *Node) UseUnderlay(t testing.TB) {
	t.Helper()
	ifname := "ktn" + strings.TrimPrefix(nd.netns, "kt")
	ip, _ := ygot.StringToStructuredPath("/interfaces/interface[name=" + ifname + "]/config")
	tp, _ := ygot.StringToStructuredPath("/tunnel/config/underlay-interface")
	_, err := nd.Client().Set(nd.Context(), &gpb.SetRequest{Update: []*gpb.Update{
		{Path: ip, Val: &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: []byte(fmt.Sprintf(`{"name":%q,"type":"UNDERLAY"}`, ifname))}}},
		{Path: tp, Val: &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: ifname}}},
	}})
	if err != nil {
		t.Fatalf("set underlay of %s: %v", nd.Name, err)
	}
}
