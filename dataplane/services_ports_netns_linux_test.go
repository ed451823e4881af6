package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// portServer answers every connection on pod:port with "<port>\n" and
// holds it open until the client closes.
func portServer(t *testing.T, p *testPod, port uint16) {
	t.Helper()
	var ln net.Listener
	if err := p.ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen in %v: %v", p.addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				fmt.Fprintf(c, "%d\n", port)
				io.Copy(io.Discard, c)
			}()
		}
	}()
}

// dialVIP connects the client pod to the service's port and returns the
// connection and the backend port that answered.
func dialVIP(t *testing.T, client *testPod, port uint16) (net.Conn, string) {
	t.Helper()
	var c net.Conn
	if err := client.ns.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(vipAddr, port).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial the service's port %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from the service's port %d: %v", port, err)
	}
	return c, strings.TrimSpace(line)
}

// TestServicePortsAndFlowsOnRequest: a service with its unnamed port (80,
// to each backend's port 8080) and a named port (https, 443, to target
// port 8443) translates each to its own backend port; a state refresh (as
// a gNMI Get of service[name=web]/state/flows runs it) lists both flows,
// keyed by protocol, client and service port, read from the flow table at
// that moment (the periodic publication is an hour away); the published
// state has the named port's counters and the backend's summed over
// both ports; removing the named port deletes its flows.
func TestServicePortsAndFlowsOnRequest(t *testing.T) {
	a, _, _ := newCoreHosts(t, nil)
	pb := addPod(t, a.ns, "pb1", 11, netip.MustParseAddr("10.1.0.3"), podMTU)
	portServer(t, pb, 8080)
	portServer(t, pb, 8443)
	web := func(https bool) func(*gen.Device) {
		return func(d *gen.Device) {
			webConfig(pb)(d)
			if !https {
				return
			}
			pc := d.NetworkInstances.NetworkInstance["red"].Services.Service["web"].GetOrCreatePorts().GetOrCreatePort("https").GetOrCreateConfig()
			pc.Name, pc.Protocol, pc.Port, pc.TargetPort = ygot.String("https"), gen.IsthmusNetworkInstance_ServiceProtocol_TCP, ygot.Uint16(443), ygot.Uint16(8443)
		}
	}
	a.commit(t, edits(podConfig(pb), web(true)))

	c80, got80 := dialVIP(t, a.pod, 80)
	c443, got443 := dialVIP(t, a.pod, 443)
	if got80 != "8080" || got443 != "8443" {
		t.Fatalf("port 80 reached backend port %s, 443 reached %s; want 8080 and 8443", got80, got443)
	}
	client := func(c net.Conn) netip.AddrPort { return netip.MustParseAddrPort(c.LocalAddr().String()) }

	const flowsPath = "/network-instances/network-instance[name=red]/services/service[name=web]/state/flows"
	p, err := ygot.StringToStructuredPath(flowsPath)
	must(t, err)
	must(t, a.core.RefreshState(context.Background(), p))
	tcp := gen.IsthmusNetworkInstance_ServiceProtocol_TCP
	readFlows := func() map[gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Flows_Flow_Key]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Flows_Flow {
		var out map[gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Flows_Flow_Key]*gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Flows_Flow
		must(t, a.core.Read(func(_, st *gen.Device) error {
			if fl := nos.Services(nos.NetworkInstances(st)["red"])["web"].GetState().GetFlows(); fl != nil {
				out = fl.Flow
			}
			return nil
		}))
		return out
	}
	flows := readFlows()
	for _, w := range []struct {
		c       net.Conn
		port    uint16
		backend uint16
	}{{c80, 80, 8080}, {c443, 443, 8443}} {
		cl := client(w.c)
		f := flows[gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_State_Flows_Flow_Key{
			Protocol: tcp, ClientAddress: cl.Addr().String(), ClientPort: cl.Port(), ServicePort: w.port}]
		if f == nil || f.GetBackendAddress() != pb.addr.String() || f.GetBackendPort() != w.backend || f.GetState() != gen.IsthmusNetworkInstance_FlowState_ESTABLISHED {
			t.Errorf("flow %v → port %d on request: %+v, want established to %v:%d (all: %v)", cl, w.port, f, pb.addr, w.backend, flows)
		}
	}
	if len(flows) != 2 {
		t.Errorf("%d flows listed on request, want 2", len(flows))
	}

	must(t, a.rec.collectAndPublish())
	must(t, a.core.Read(func(_, st *gen.Device) error {
		svc := nos.Services(nos.NetworkInstances(st)["red"])["web"]
		if s := svc.GetState(); s.GetPort() != 80 || s.GetProtocol() != tcp || s.GetCounters().GetFlows() != 2 {
			return fmt.Errorf("service state: port %d %v, counters %+v; want port 80 TCP, 2 flows", s.GetPort(), s.GetProtocol(), s.GetCounters())
		}
		ps := svc.GetPorts().GetPort("https").GetState()
		if ps.GetPort() != 443 || ps.GetTargetPort() != 8443 || ps.GetCounters().GetFlows() != 1 || ps.GetCounters().GetPackets() == 0 {
			return fmt.Errorf("port https state: %d → %d, counters %+v; want 443 → 8443, 1 flow", ps.GetPort(), ps.GetTargetPort(), ps.GetCounters())
		}
		if bc := nos.Backends(svc)[gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Services_Service_Backends_Backend_Key{Address: pb.addr.String(), Port: 8080}].GetState().GetCounters(); bc.GetFlows() != 2 {
			return fmt.Errorf("backend counters %+v, want the flows of both ports (2)", bc)
		}
		return nil
	}))

	// Without its named port, the service's https flows are gone.
	a.commit(t, edits(web(false)))
	must(t, a.core.RefreshState(context.Background(), p))
	flows = readFlows()
	if len(flows) != 1 {
		t.Errorf("after removing port https: %d flows, want only port 80's (%v)", len(flows), flows)
	}
	for k := range flows {
		if k.ServicePort != 80 {
			t.Errorf("flow %+v of the removed port is still listed", k)
		}
	}
}
