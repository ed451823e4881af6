package testbed

import (
	"context"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The configuration TestStatePathsOnConfiguredHost puts on c1 before its
// walk, so that the operational paths of ACLs, services, external
// connectivity and commit-confirmed describe something that exists.
const (
	stateACL      = "statepaths-egress"
	stateDenyPort = 7001 // UDP port the ACL refuses
	stateCommitID = "statepaths"
	statePortName = "alt" // a named port of the service, besides its unnamed one
	statePort     = 8080
	stateStatic   = "10.99.0.0/24" // a static route of red through pod a
)

// stateFloatingIP is the floating IP bound to the pod on c1, from
// stateFloatingPool.
var (
	stateFloatingPool = "198.51.100.16/28"
	stateFloatingIP   = netip.MustParseAddr("198.51.100.17")
)

// configureStateObjects configures on c1, in one gNMI Set: an egress ACL
// set on pod a (entry 10 refuses UDP to stateDenyPort, entry 20 accepts
// the rest, so every flow names the entry that decided it), service web
// in red with an unnamed and a named port and pod b on d1 as its backend,
// a static route in red through a, and source NAT with a floating
// pool and a floating IP bound to a in red. It then sends traffic that
// makes flows in both tables: a connects to both ports of the service
// (translated on c1 to b) and keeps a connection to each open and sends UDP to b's refused port. The returned function
// removes the configuration again.
func configureStateObjects(t *testing.T, ctx context.Context, tb *Testbed, a, b *Pod) func() {
	t.Helper()
	type obj = map[string]any
	entry := func(seq int, action string, proto int, port int) obj {
		c := obj{"sequence-id": seq, "action": action}
		if proto != 0 {
			c["protocol"], c["destination-port"] = proto, port
		}
		return obj{"sequence-id": seq, "config": c}
	}
	ifPath := "/interfaces/interface[name=" + podIfName(a) + "]"
	ext := externalPath("red")
	static := "/network-instances/network-instance[name=red]/static-routes/static[prefix=" + stateStatic + "]"
	replaces := []obj{
		{"path": "/acl/acl-sets/acl-set[name=" + stateACL + "]", "value": obj{
			"name": stateACL, "config": obj{"name": stateACL, "description": "state paths walk"},
			"acl-entries": obj{"acl-entry": []obj{entry(10, "DROP", 17, stateDenyPort), entry(20, "ACCEPT", 0, 0)}},
		}},
		{"path": ifPath + "/acl", "value": obj{"config": obj{"egress-acl-set": []string{stateACL}, "egress-default-action": "DROP"}}},
		{"path": servicePath(), "value": obj{
			"name": serviceName,
			"config": obj{"name": serviceName, "address": serviceVIP.String(), "protocol": "TCP", "port": servicePort,
				"external-traffic-scope": "ALL"},
			"ports": obj{"port": []obj{{"name": statePortName, "config": obj{"name": statePortName, "protocol": "TCP",
				"port": statePort, "target-port": probePort}}}},
			"backends": obj{"backend": []obj{{"address": b.Address.String(), "port": probePort,
				"config": obj{"address": b.Address.String(), "port": probePort}}}},
		}},
		{"path": static, "value": obj{"prefix": stateStatic, "config": obj{"prefix": stateStatic, "interface": podIfName(a)}}},
		{"path": ext + "/config", "value": obj{"mode": "SNAT", "port-min": 20000, "port-max": 20999, "floating-pool": []string{stateFloatingPool}}},
		{"path": ext + "/floating-ips/floating-ip[address=" + stateFloatingIP.String() + "]", "value": obj{
			"address": stateFloatingIP.String(), "config": obj{"address": stateFloatingIP.String(), "pod-address": a.Address.String()}}},
	}
	for i := range replaces {
		replaces[i]["encoding"] = "json_ietf"
	}
	req, err := yaml.Marshal(obj{"replaces": replaces})
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.gnmicRequest(ctx, "c1", "statepaths-request.yaml", req); err != nil {
		t.Fatal(err)
	}
	undo := func() {
		del, err := yaml.Marshal(obj{"deletes": []string{ifPath + "/acl", "/acl/acl-sets/acl-set[name=" + stateACL + "]", servicePath(), static, ext}})
		if err == nil {
			err = tb.gnmicRequest(context.WithoutCancel(ctx), "c1", "statepaths-delete.yaml", del)
		}
		if err != nil {
			t.Errorf("remove the state paths configuration: %v", err)
		}
	}
	var closers []io.Closer
	fail := func(format string, args ...any) {
		t.Helper()
		for _, c := range closers {
			c.Close()
		}
		undo()
		t.Fatalf(format, args...)
	}
	srv, err := tb.ServeIdentity(b, probePort)
	if err != nil {
		fail("%v", err)
	}
	closers = append(closers, srv)
	usrv, err := servePolicyUDP(b, stateDenyPort)
	if err != nil {
		fail("%v", err)
	}
	closers = append(closers, usrv)
	// The first attempts wait for the commit to reach the forwarder; a
	// connection to each port then stays open through the walk, so its
	// flow is in the table whenever the walk reads it.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	for _, port := range []int{servicePort, statePort} {
		if err := poll(wctx, func() (bool, error) {
			_, err := tb.TCPExchange(wctx, a, serviceVIP.String(), port, 1024)
			return err == nil, err
		}); err != nil {
			fail("connect from %s to the service's port %d: %v", ident(a), port, err)
		}
		c, err := dialIn(wctx, filepath.Join(netnsDir, a.Netns), net.JoinHostPort(serviceVIP.String(), strconv.Itoa(port)))
		if err != nil {
			fail("%v", err)
		}
		closers = append(closers, c)
		if _, err := io.ReadFull(c, make([]byte, 32)); err != nil { // the backend's identity
			fail("read from the service's port %d: %v", port, err)
		}
	}
	uctx, cancel := context.WithTimeout(ctx, policyProbeTimeout)
	defer cancel()
	if _, err := udpAnswer(uctx, a, b.Address.String(), stateDenyPort); err == nil {
		fail("udp from %s to %s:%d answered through an ACL entry that drops it", ident(a), b.Address, stateDenyPort)
	}
	return func() {
		for _, c := range closers {
			c.Close()
		}
		undo()
	}
}

// startConfirmedCommit makes a confirmed commit wait on c1 (it changes
// the ACL set's description, with a rollback duration far beyond the
// walk) and returns the function that cancels it, rolling the change
// back.
func startConfirmedCommit(t *testing.T, ctx context.Context, tb *Testbed) func() {
	t.Helper()
	gnmic, err := tb.needGnmic()
	if err != nil {
		t.Fatal(err)
	}
	target, err := tb.GNMIAddr("c1")
	if err != nil {
		t.Fatal(err)
	}
	descr := "/acl/acl-sets/acl-set[name=" + stateACL + "]/config/description"
	if _, err := tb.Gnmic(ctx, gnmic, "c1", target, "set", "--commit-id", stateCommitID, "--commit-request",
		"--rollback-duration", (10 * time.Minute).String(), "--update-path", descr, "--update-value", "waiting"); err != nil {
		t.Fatalf("start a confirmed commit on c1: %v", err)
	}
	return func() {
		if _, err := tb.Gnmic(context.WithoutCancel(ctx), gnmic, "c1", target, "set", "--commit-id", stateCommitID, "--commit-cancel"); err != nil {
			t.Errorf("cancel the confirmed commit on c1: %v", err)
		}
	}
}
