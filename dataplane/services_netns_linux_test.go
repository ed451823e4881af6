package dataplane

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
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

// backendServer answers on pod:8080. A connection that starts with 'q'
// gets the pod's address and is closed; 'h' gets the address and is held
// open until the client closes; 's' gets, once the client closes its
// side, "<address> <bytes> <sha256>" of everything that followed.
func backendServer(t *testing.T, p *testPod) {
	t.Helper()
	var ln net.Listener
	if err := p.ns.do(func() (err error) {
		ln, err = net.Listen("tcp4", ":8080")
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
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				mode := make([]byte, 1)
				if _, err := io.ReadFull(c, mode); err != nil {
					return
				}
				switch mode[0] {
				case 'q':
					fmt.Fprintf(c, "%s\n", p.addr)
				case 'h':
					fmt.Fprintf(c, "%s\n", p.addr)
					io.Copy(io.Discard, c)
				case 's':
					h := sha256.New()
					n, _ := io.Copy(h, c)
					fmt.Fprintf(c, "%s %d %x\n", p.addr, n, h.Sum(nil))
				}
			}()
		}
	}()
}

// podConfig adds a pod interface of VRF red to a configuration.
func podConfig(p *testPod) func(*gen.Device) {
	return func(d *gen.Device) {
		pc := d.GetOrCreateInterfaces().GetOrCreateInterface(p.hostIf).GetOrCreateConfig()
		pc.Name, pc.Type, pc.NetworkInstance = ygot.String(p.hostIf), gen.IsthmusTypes_InterfaceType_POD, ygot.String("red")
		pc.Ipv4Address = ygot.String(p.addr.String() + "/32")
		pc.Mtu = ygot.Uint16(podMTU)
		pc.GetOrCreatePod().PeerMacAddress = ygot.String(p.mac.String())
	}
}

// webConfig sets service web (TCP 10.96.0.10:80) to these backends on :8080.
func webConfig(backends ...*testPod) func(*gen.Device) {
	return func(d *gen.Device) {
		svcs := d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("red").GetOrCreateServices()
		delete(svcs.Service, "web")
		s := svcs.GetOrCreateService("web")
		c := s.GetOrCreateConfig()
		c.Name, c.Address, c.Protocol, c.Port = ygot.String("web"), ygot.String(vipAddr.String()), gen.IsthmusNetworkInstance_ServiceProtocol_TCP, ygot.Uint16(80)
		for _, p := range backends {
			bc := s.GetOrCreateBackends().GetOrCreateBackend(p.addr.String(), 8080).GetOrCreateConfig()
			bc.Address, bc.Port = ygot.String(p.addr.String()), ygot.Uint16(8080)
		}
	}
}

func edits(fns ...func(*gen.Device)) func(*gen.Device) error {
	return func(d *gen.Device) error {
		for _, f := range fns {
			f(d)
		}
		return nil
	}
}

// askVIP opens a connection from the client pod to the service and sends
// mode; it returns the connection and the backend that answered.
func askVIP(client *testPod, mode byte) (net.Conn, string, error) {
	var c net.Conn
	err := client.ns.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(vipAddr, 80).String(), 5*time.Second)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{mode}); err != nil {
		c.Close()
		return nil, "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return c, strings.TrimSpace(line), nil
}

// TestServiceNamespaces: a service with 3 backends on 2 hosts, reached by
// a pod on the first: 1,000 short connections spread evenly; a long
// transfer survives a backend being added; a removed backend's
// connections are reset (their flows are deleted, the next packet goes to
// another backend, which answers with a reset); state shows the service,
// its backends and flows.
func TestServiceNamespaces(t *testing.T) {
	a, b, addrs := newCoreHosts(t, nil)
	pb1 := addPod(t, a.ns, "pb1", 11, netip.MustParseAddr("10.1.0.3"), podMTU)
	pb4 := addPod(t, a.ns, "pb4", 14, netip.MustParseAddr("10.1.0.4"), podMTU)
	pb2 := addPod(t, b.ns, "pb2", 12, netip.MustParseAddr("10.2.0.3"), podMTU)
	pb3 := addPod(t, b.ns, "pb3", 13, netip.MustParseAddr("10.2.0.4"), podMTU)
	for _, p := range []*testPod{pb1, pb2, pb3, pb4} {
		backendServer(t, p)
	}
	a.commit(t, edits(podConfig(pb1), podConfig(pb4), webConfig(pb1, pb2, pb3)))
	b.commit(t, edits(podConfig(pb2), podConfig(pb3), webConfig(pb1, pb2, pb3)))

	// What BGP would import: a reaches b's pods by their per-prefix
	// labels, b reaches a's pool by a's VRF label.
	labelA, err := a.core.Labels().VRF("red")
	must(t, err)
	var fibA []nos.RouteChange
	for _, p := range []*testPod{b.pod, pb2, pb3} {
		l, err := b.core.Labels().Prefix("red", netip.PrefixFrom(p.addr, 32))
		must(t, err)
		fibA = append(fibA, nos.RouteChange{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.PrefixFrom(p.addr, 32)},
			NextHops: []nos.NextHop{{Endpoint: addrs[1], Label: l, Encap: nos.EncapMPLSoUDP}}}})
	}
	a.core.FIB().Update(fibA)
	b.core.FIB().Update([]nos.RouteChange{{Route: nos.Route{RouteKey: nos.RouteKey{VRF: "red", Prefix: netip.MustParsePrefix("10.1.0.0/24")},
		NextHops: []nos.NextHop{{Endpoint: addrs[0], Label: labelA, Encap: nos.EncapMPLSoUDP}}}}})
	waitPing(t, a.pod, pb3.addr, true)

	// 1,000 short connections.
	const n = 1000
	count := map[string]int{}
	for i := 0; i < n; i++ {
		c, who, err := askVIP(a.pod, 'q')
		if err != nil {
			t.Fatalf("connection %d to the service: %v", i, err)
		}
		c.Close()
		count[who]++
	}
	for _, p := range []*testPod{pb1, pb2, pb3} {
		if got := count[p.addr.String()]; math.Abs(float64(got)-n/3) > 0.15*n/3 {
			t.Errorf("backend %v answered %d of %d connections, want %d ± 15%%", p.addr, got, n, n/3)
		}
	}
	t.Logf("1,000 connections: %v", count)

	// A long transfer while a backend is added.
	c, err := func() (c net.Conn, err error) {
		err = a.pod.ns.do(func() (err error) {
			c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(vipAddr, 80).String(), 5*time.Second)
			return err
		})
		return c, err
	}()
	if err != nil {
		t.Fatalf("dial the service: %v", err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	const size = 64 << 20
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), h)
	sent := make(chan error, 1)
	go func() {
		if _, err := c.Write([]byte{'s'}); err != nil {
			sent <- err
			return
		}
		_, err := io.Copy(c, src)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		sent <- err
	}()
	time.Sleep(100 * time.Millisecond)
	a.commit(t, edits(webConfig(pb1, pb2, pb3, pb4)))
	if err := <-sent; err != nil {
		t.Fatalf("send across a backend being added: %v", err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil {
		t.Fatalf("read the transfer's result: %v", err)
	}
	if want := fmt.Sprintf(" %d %x", size, h.Sum(nil)); !strings.HasSuffix(strings.TrimSpace(reply), want) {
		t.Fatalf("backend received %q, want %q", strings.TrimSpace(reply), want)
	}

	// Removing a backend resets its connections.
	var held net.Conn
	for i := 0; i < 200 && held == nil; i++ {
		c, who, err := askVIP(a.pod, 'h')
		if err != nil {
			t.Fatalf("connection to the service: %v", err)
		}
		if who == pb3.addr.String() {
			held = c
		} else {
			c.Close()
		}
	}
	if held == nil {
		t.Fatal("no connection reached backend pb3")
	}
	defer held.Close()
	a.commit(t, edits(webConfig(pb1, pb2, pb4)))
	flows, err := a.rec.Dataplane().ServiceFlows(ServiceKey{VRF: "red", Addr: vipAddr, Proto: TCP, Port: 80}, 0)
	must(t, err)
	for _, f := range flows {
		if f.Backend.Addr() == pb3.addr {
			t.Fatalf("flow %+v of the removed backend is still in the table", f)
		}
	}
	held.Write([]byte("more"))
	_, err = held.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("connection to the removed backend: read %v, want a reset", err)
	}

	// State.
	must(t, a.rec.collectAndPublish())
	err = a.core.Read(func(_, state *gen.Device) error {
		svc := nos.Services(nos.NetworkInstances(state)["red"])["web"].GetState()
		if svc.GetBackends() != 3 || svc.GetLocalBackends() != 2 || svc.GetCounters().GetFlows() < n || svc.GetCounters().GetPackets() == 0 {
			return fmt.Errorf("service state: %d backends, %d local, counters %+v", svc.GetBackends(), svc.GetLocalBackends(), svc.GetCounters())
		}
		be := nos.Backends(nos.Services(nos.NetworkInstances(state)["red"])["web"])
		for k, b := range be {
			if b.GetState().GetCounters().GetFlows() == 0 && k.Address != pb4.addr.String() {
				return fmt.Errorf("backend %v has no flows in its state", k)
			}
		}
		flows := nos.Services(nos.NetworkInstances(state)["red"])["web"].GetState().GetFlows().Flow
		if len(flows) == 0 || len(flows) > flowsPerService {
			return fmt.Errorf("service state lists %d flows, want 1..%d", len(flows), flowsPerService)
		}
		for k, f := range flows {
			if k.ClientAddress != a.pod.addr.String() || f.GetBackendPort() != 8080 || f.GetState() == gen.IsthmusNetworkInstance_FlowState_UNSET {
				return fmt.Errorf("flow %+v: %s:%d → %s:%d %v", k, k.ClientAddress, k.ClientPort, f.GetBackendAddress(), f.GetBackendPort(), f.GetState())
			}
		}
		ft := state.GetSystem().GetFlowTable().GetState()
		if ft.GetCreated() < n || ft.GetCapacity() == 0 {
			return fmt.Errorf("flow table state %+v", ft)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
}
