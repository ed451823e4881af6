package bgp

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

type neighborView struct {
	state       gen.E_IsthmusTypes_SessionState
	transitions uint64
	received    uint32
	installed   uint32
	sent        uint32
}

func (n *node) neighborState(addr string) neighborView {
	var v neighborView
	n.core.Read(func(_, st *gen.Device) error {
		ni := st.GetNetworkInstances().GetNetworkInstance("default")
		nb := ni.GetProtocols().GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors().GetNeighbor(addr)
		if nb == nil {
			return nil
		}
		v.state = nb.GetState().GetSessionState()
		v.transitions = nb.GetState().GetEstablishedTransitions()
		p := nb.GetAfiSafis().GetAfiSafi(gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST).GetState().GetPrefixes()
		v.received, v.installed, v.sent = p.GetReceived(), p.GetInstalled(), p.GetSent()
		return nil
	})
	return v
}

func (n *node) vrfRoutes(vrf string) (local, remote uint32) {
	n.core.Read(func(_, st *gen.Device) error {
		s := st.GetNetworkInstances().GetNetworkInstance(vrf).GetState()
		local, remote = s.GetExported().GetRoutes(), s.GetImported().GetRoutes()
		return nil
	})
	return local, remote
}

// TestStateAndNeighborDiff: session and prefix state reaches the tree;
// changing or removing one neighbor leaves the other session alone.
func TestStateAndNeighborDiff(t *testing.T) {
	const a, b, c = "127.100.4.1", "127.100.4.2", "127.100.4.3"
	na, nb, nc := startNode(t, loopbackConfig(a)), startNode(t, loopbackConfig(b)), startNode(t, loopbackConfig(c))
	red := func(rd, pool string, pods ...string) []vrfConf {
		return []vrfConf{{name: "red", rd: rd, imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: pool, pods: pods}}
	}
	hostA := hostConf{as: 65000, routerID: "10.0.4.1", endpoint: "192.0.2.41", vrfs: red("10.0.4.1:1", "10.4.1.0/24", "10.4.1.1", "10.4.1.2"),
		neighbors: []nbrConf{{addr: b, as: 65000, local: a}, {addr: c, as: 65000, local: a}}}
	hostB := hostConf{as: 65000, routerID: "10.0.4.2", endpoint: "192.0.2.42", vrfs: red("10.0.4.2:1", "10.4.2.0/24", "10.4.2.1"),
		neighbors: []nbrConf{{addr: a, as: 65000, local: b, passive: true}}}
	hostC := hostConf{as: 65000, routerID: "10.0.4.3", endpoint: "192.0.2.43", vrfs: red("10.0.4.3:1", "10.4.3.0/24"),
		neighbors: []nbrConf{{addr: a, as: 65000, local: c, passive: true}}}
	startSpeakers([]*node{na, nb, nc}, []hostConf{hostA, hostB, hostC})
	na.commit(hostA)
	nb.commit(hostB)
	nc.commit(hostC)

	want := neighborView{state: gen.IsthmusTypes_SessionState_ESTABLISHED, transitions: 1, received: 1, installed: 1, sent: 2}
	eventually(t, 30*time.Second, "state of neighbor b on a", func() bool { return na.neighborState(b) == want })
	eventually(t, 10*time.Second, "red route counts on a", func() bool { l, r := na.vrfRoutes("red"); return l == 2 && r == 1 })

	// Change c's timers: b's session is untouched.
	h := hostA
	h.neighbors = append([]nbrConf(nil), hostA.neighbors...)
	na.commitWith(h, func(d *gen.Device) {
		nbr := d.GetNetworkInstances().GetNetworkInstance("default").GetProtocols().
			GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors().GetNeighbor(c)
		nbr.GetTimers().GetConfig().HoldTime = u16(12)
		nbr.GetConfig().Description = strPtr("changed")
	})
	h.neighbors = h.neighbors[:1] // then remove c
	na.commit(h)
	eventually(t, 10*time.Second, "c gone from a's state", func() bool { return na.neighborState(c) == neighborView{} })
	time.Sleep(500 * time.Millisecond)
	if got := na.neighborState(b); got.transitions != 1 || got.state != gen.IsthmusTypes_SessionState_ESTABLISHED {
		t.Errorf("neighbor b after changing c: %+v", got)
	}
	if got := na.bgp.peerTransitions(b); got != 1 {
		t.Errorf("b's session was reset (%d establishments)", got)
	}

	// Uptime keeps counting with nothing happening, in step with
	// last-established.
	uptime := func() (up uint64, since time.Duration) {
		na.core.Read(func(_, st *gen.Device) error {
			s := st.GetNetworkInstances().GetNetworkInstance("default").GetProtocols().
				GetProtocol(gen.IsthmusTypes_ProtocolType_BGP, "bgp").GetBgp().GetNeighbors().GetNeighbor(b).GetState()
			up, since = s.GetUptime(), time.Since(time.Unix(0, int64(s.GetLastEstablished())))
			return nil
		})
		return up, since
	}
	first, _ := uptime()
	time.Sleep(2500 * time.Millisecond)
	up, since := uptime()
	if up < first+2 || time.Duration(up)*time.Second > since || since-time.Duration(up)*time.Second > 2*time.Second {
		t.Errorf("uptime %d s (was %d s 2.5 s ago), established %v ago", up, first, since.Round(time.Millisecond))
	}
}

func u16(v uint16) *uint16 { return &v }

// commitWith commits a host configuration with an extra edit.
func (n *node) commitWith(h hostConf, edit func(*gen.Device)) {
	n.t.Helper()
	_, err := n.core.Commit(context.Background(), "test", func(d *gen.Device) error {
		*d = gen.Device{}
		h.build(d)
		edit(d)
		return nil
	})
	if err != nil {
		n.t.Fatalf("commit: %v", err)
	}
}

// peerTransitions returns how often a session became established.
func (r *Reconciler) peerTransitions(addr string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a, p := range r.peers {
		if a.String() == addr {
			return p.transitions
		}
	}
	panic(fmt.Sprintf("no peer %s", addr))
}

// TestVRFStateOwnership: BGP writes only the exported and imported
// subtrees of a network instance's state; the config mirror belongs to
// the core, forwarding and counters to the dataplane, and BGP leaves them
// alone.
func TestVRFStateOwnership(t *testing.T) {
	const a, b = "127.100.8.1", "127.100.8.2"
	na, nb := startNode(t, loopbackConfig(a)), startNode(t, loopbackConfig(b))
	red := func(rd, pool string, pods ...string) []vrfConf {
		return []vrfConf{{name: "red", rd: rd, imp: []string{"65000:1"}, exp: []string{"65000:1"}, pool: pool, pods: pods}}
	}
	hostA := hostConf{as: 65000, routerID: "10.0.8.1", endpoint: "192.0.2.81", vrfs: red("10.0.8.1:1", "10.8.1.0/24", "10.8.1.1", "10.8.1.2"),
		neighbors: []nbrConf{{addr: b, as: 65000, local: a}}}
	hostB := hostConf{as: 65000, routerID: "10.0.8.2", endpoint: "192.0.2.82", vrfs: red("10.0.8.2:1", "10.8.2.0/24", "10.8.2.1"),
		neighbors: []nbrConf{{addr: a, as: 65000, local: b, passive: true}}}
	startSpeakers([]*node{na, nb}, []hostConf{hostA, hostB})
	na.commit(hostA)
	nb.commit(hostB)
	eventually(t, 30*time.Second, "red's counts on a", func() bool { l, r := na.vrfRoutes("red"); return l == 2 && r == 1 })

	for _, w := range vrfWrites(na.bgp.snapshot(), na.bgp.rib.counters(), nil) {
		if !strings.HasSuffix(w.path, "/state/exported") && !strings.HasSuffix(w.path, "/state/imported") {
			t.Errorf("bgp writes %s, outside its subtrees", w.path)
		}
	}
	lbl, err := na.core.Labels().VRF("red")
	if err != nil {
		t.Fatal(err)
	}
	na.core.Read(func(_, st *gen.Device) error {
		s := *st.GetNetworkInstances().GetNetworkInstance("red").GetState()
		if got := s.GetExported().GetLabels(); len(got) != 1 || got[0] != lbl {
			t.Errorf("exported labels %v, want [%d]", got, lbl)
		}
		s.Exported, s.Imported = nil, nil
		// The applied config leaves are the core's mirror (nos/mirror.go).
		sv, cfg := reflect.ValueOf(&s).Elem(), reflect.TypeOf(gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Config{})
		for i := range sv.NumField() {
			if _, mirrored := cfg.FieldByName(sv.Type().Field(i).Name); mirrored {
				sv.Field(i).SetZero()
			}
		}
		if !reflect.ValueOf(s).IsZero() {
			j, _ := ygot.EmitJSON(&s, &ygot.EmitJSONConfig{Format: ygot.RFC7951, SkipValidation: true})
			t.Errorf("red's state has leaves bgp does not own: %s", j)
		}
		return nil
	})
}
