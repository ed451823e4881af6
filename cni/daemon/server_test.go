package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/daemon"
	"github.com/isthmus-net/isthmus/cni/internal/testdaemon"
	"github.com/isthmus-net/isthmus/gen"
)

func client(t *testing.T, d *testdaemon.Daemon) *api.Client {
	t.Helper()
	c, err := api.NewClient(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addReq(network, container string) *api.AddRequest {
	return &api.AddRequest{
		AttachmentID: api.AttachmentID{ContainerID: container, IfName: "eth0"},
		Network:      network,
		Netns:        "/var/run/netns/" + container,
		Pod:          api.Pod{Namespace: "shop", Name: container},
		HostIfName:   "ist" + container,
		HostMAC:      "02:00:00:00:00:01",
		PodMAC:       "02:00:00:00:00:02",
	}
}

func TestAddCommitsAttachment(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	c := client(t, d)
	ctx := context.Background()

	resp, err := c.Add(ctx, addReq("red", "pod1"))
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	a := resp.Attachment
	if a.VRF != "red" || a.Address != netip.MustParsePrefix("10.1.0.1/32") ||
		a.Gateway != netip.MustParseAddr("169.254.1.1") || a.MTU != 1450 {
		t.Fatalf("attachment = %+v", a)
	}
	intf := d.Interface("istpod1")
	if intf == nil {
		t.Fatal("attachment not in the configuration tree")
	}
	cfg := intf.GetConfig()
	if cfg.GetType() != gen.IsthmusTypes_InterfaceType_POD || cfg.GetNetworkInstance() != "red" ||
		cfg.GetIpv4Address() != "10.1.0.1/32" || cfg.GetPod().GetContainerId() != "pod1" ||
		cfg.GetPod().GetNamespace() != "shop" || cfg.GetPod().GetPeerMacAddress() != "02:00:00:00:00:02" ||
		cfg.GetMacAddress() != "02:00:00:00:00:01" || cfg.GetMtu() != 1450 {
		t.Fatalf("interface config = %+v pod %+v", cfg, cfg.GetPod())
	}

	// A repeated ADD returns the same attachment.
	again, err := c.Add(ctx, addReq("red", "pod1"))
	if err != nil || again.Attachment.Address != a.Address {
		t.Fatalf("repeated add = %+v, %v", again, err)
	}
	got, err := c.Get(ctx, &api.GetRequest{AttachmentID: a.AttachmentID})
	if err != nil || got.Attachment.Address != a.Address {
		t.Fatalf("get = %+v, %v", got, err)
	}
}

func TestMTUFollowsUnderlay(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	d.AddUnderlay("eth9", 9000)
	resp, err := client(t, d).Add(context.Background(), addReq("red", "pod1"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attachment.MTU != 8950 {
		t.Fatalf("mtu = %d, want 8950", resp.Attachment.MTU)
	}
}

func TestErrors(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/30")
	c := client(t, d)
	ctx := context.Background()

	if _, err := c.Add(ctx, addReq("blue", "pod1")); !errors.Is(err, api.ErrUnknownNetwork) {
		t.Fatalf("unknown network: err = %v", err)
	}
	for _, id := range []string{"pod1", "pod2"} {
		if _, err := c.Add(ctx, addReq("red", id)); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
	if _, err := c.Add(ctx, addReq("red", "pod3")); !errors.Is(err, api.ErrPoolExhausted) {
		t.Fatalf("third add in a /30: err = %v, want pool exhausted", err)
	}
	if d.Interface("istpod3") != nil {
		t.Fatal("failed add left an interface in the tree")
	}
	bad := addReq("red", "pod4")
	bad.HostMAC = "nope"
	if _, err := c.Add(ctx, bad); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("bad mac: err = %v", err)
	}
	if _, err := c.Get(ctx, &api.GetRequest{AttachmentID: api.AttachmentID{ContainerID: "x", IfName: "eth0"}}); !errors.Is(err, api.ErrNoAttachment) {
		t.Fatalf("get missing: err = %v", err)
	}
	// Every name is checked before anything is allocated, as the plugin
	// checks it: the socket is a trust boundary of its own.
	for name, mutate := range map[string]func(*api.AddRequest){
		"container id":   func(r *api.AddRequest) { r.ContainerID = "../pod" },
		"ifname":         func(r *api.AddRequest) { r.IfName = "eth0:1" },
		"long ifname":    func(r *api.AddRequest) { r.IfName = "abcdefghijklmnop" },
		"network":        func(r *api.AddRequest) { r.Network = "red/blue" },
		"pod namespace":  func(r *api.AddRequest) { r.Pod.Namespace = "Shop" },
		"relative netns": func(r *api.AddRequest) { r.Netns = "netns/pod" },
	} {
		req := addReq("red", "pod6")
		mutate(req)
		if _, err := c.Add(ctx, req); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("bad %s: err = %v, want invalid", name, err)
		}
	}
	badID := api.AttachmentID{ContainerID: "pod1", IfName: ".."}
	if _, err := c.Del(ctx, &api.DelRequest{AttachmentID: badID}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("del with ifname \"..\": err = %v, want invalid", err)
	}
	if _, err := c.GC(ctx, &api.GCRequest{Network: "red", Valid: []api.AttachmentID{badID}}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("gc with ifname \"..\" in the valid list: err = %v, want invalid", err)
	}
	// Host interface names must not collide with other interfaces.
	d.AddUnderlay("istpod5", 1500)
	if _, err := c.Add(ctx, addReq("red", "pod5")); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("colliding host ifname: err = %v", err)
	}
}

func TestFailedCommitReleasesAddress(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/30")
	c := client(t, d)
	ctx := context.Background()
	// An MTU the schema refuses makes the commit fail after allocation.
	d.AddUnderlay("eth9", 600)
	if _, err := c.Add(ctx, addReq("red", "pod1")); err == nil {
		t.Fatal("add with an invalid mtu succeeded")
	}
	d.AddUnderlay("eth9", 1500)
	for _, id := range []string{"pod2", "pod3"} {
		if _, err := c.Add(ctx, addReq("red", id)); err != nil {
			t.Fatalf("add %s after a failed add: %v (address leaked?)", id, err)
		}
	}
}

func TestDelIsIdempotent(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/30")
	c := client(t, d)
	ctx := context.Background()
	if _, err := c.Add(ctx, addReq("red", "pod1")); err != nil {
		t.Fatal(err)
	}
	id := api.AttachmentID{ContainerID: "pod1", IfName: "eth0"}
	for i := range 2 {
		if _, err := c.Del(ctx, &api.DelRequest{AttachmentID: id, Network: "red"}); err != nil {
			t.Fatalf("del %d: %v", i, err)
		}
	}
	if d.Interface("istpod1") != nil {
		t.Fatal("interface still configured after del")
	}
	// Both addresses of the /30 are free again.
	for _, id := range []string{"pod2", "pod3"} {
		if _, err := c.Add(ctx, addReq("red", id)); err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
}

func TestGC(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	d.AddVRF("blue", "65000:2", "10.1.0.0/24")
	c := client(t, d)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := c.Add(ctx, addReq("red", id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Add(ctx, addReq("blue", "z")); err != nil {
		t.Fatal(err)
	}
	resp, err := c.GC(ctx, &api.GCRequest{Network: "red", Valid: []api.AttachmentID{{ContainerID: "b", IfName: "eth0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Removed) != 2 {
		t.Fatalf("removed %d attachments, want 2: %+v", len(resp.Removed), resp.Removed)
	}
	for name, want := range map[string]bool{"ista": false, "istb": true, "istc": false, "istz": true} {
		if got := d.Interface(name) != nil; got != want {
			t.Errorf("interface %s configured = %v, want %v", name, got, want)
		}
	}
}

func TestStatus(t *testing.T) {
	var mu sync.Mutex
	notReady := errors.New("dataplane not loaded")
	readyErr := notReady
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	c := client(t, d)
	ctx := context.Background()
	st, err := c.Status(ctx, &api.StatusRequest{Network: "red"})
	if err != nil || !st.Ready {
		t.Fatalf("status red = %+v, %v", st, err)
	}
	st, err = c.Status(ctx, &api.StatusRequest{Network: "blue"})
	if err != nil || st.Ready {
		t.Fatalf("status of a missing vrf = %+v, %v", st, err)
	}

	srv, err := daemon.New(daemon.Config{}, d.Core, d.Core.Store().DB(), daemon.WithReadiness(func() error {
		mu.Lock()
		defer mu.Unlock()
		return readyErr
	}))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := srv.Status(ctx, &api.StatusRequest{Network: "red"}); st.Ready || st.Reason != notReady.Error() {
		t.Fatalf("status with failing readiness = %+v", st)
	}
	mu.Lock()
	readyErr = nil
	mu.Unlock()
	if st, _ := srv.Status(ctx, &api.StatusRequest{Network: "red"}); !st.Ready {
		t.Fatalf("status with passing readiness = %+v", st)
	}
}

func TestConcurrentAddsGetDistinctAddresses(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	c := client(t, d)
	const n = 50
	var wg sync.WaitGroup
	addrs := make([]netip.Prefix, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Add(context.Background(), addReq("red", fmt.Sprintf("p%d", i)))
			if err == nil {
				addrs[i] = resp.Attachment.Address
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("add %d: %v", i, errs[i])
		}
		if j, dup := seen[addrs[i]]; dup {
			t.Fatalf("adds %d and %d both got %s", j, i, addrs[i])
		}
		seen[addrs[i]] = i
	}
	if got := len(d.Core.Config().GetInterfaces().Interface); got != n {
		t.Fatalf("%d interfaces configured, want %d", got, n)
	}
}

func TestRestartKeepsAllocations(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/24")
	ctx := context.Background()
	want := map[string]netip.Prefix{}
	c := client(t, d)
	for i := range 10 {
		id := fmt.Sprintf("p%d", i)
		resp, err := c.Add(ctx, addReq("red", id))
		if err != nil {
			t.Fatal(err)
		}
		want[id] = resp.Attachment.Address
	}
	d.Restart()
	c = client(t, d)
	for id, addr := range want {
		got, err := c.Get(ctx, &api.GetRequest{AttachmentID: api.AttachmentID{ContainerID: id, IfName: "eth0"}})
		if err != nil || got.Attachment.Address != addr {
			t.Fatalf("after restart %s = %+v, %v; want %s", id, got, err, addr)
		}
		if d.Interface("ist"+id).GetConfig().GetIpv4Address() != addr.String() {
			t.Fatalf("after restart the tree lost %s", id)
		}
	}
	resp, err := c.Add(ctx, addReq("red", "new"))
	if err != nil {
		t.Fatal(err)
	}
	for id, addr := range want {
		if resp.Attachment.Address == addr {
			t.Fatalf("new pod got %s, still held by %s", addr, id)
		}
	}
}

func TestSocketIsRootOnly(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	fi, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode = %v, want 0600", perm)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	c, err := api.NewClient(t.TempDir() + "/missing.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Status(context.Background(), &api.StatusRequest{}); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestFailedRepeatAddKeepsCommittedAddress(t *testing.T) {
	d := testdaemon.Start(t, daemon.Config{})
	d.AddVRF("red", "65000:1", "10.1.0.0/30")
	c := client(t, d)
	ctx := context.Background()
	first, err := c.Add(ctx, addReq("red", "pod1"))
	if err != nil {
		t.Fatal(err)
	}
	d.AddUnderlay("eth9", 600) // pods would get an MTU the schema refuses
	if _, err := c.Add(ctx, addReq("red", "pod1")); err == nil {
		t.Fatal("repeated add with an invalid mtu succeeded")
	}
	got, err := c.Get(ctx, &api.GetRequest{AttachmentID: api.AttachmentID{ContainerID: "pod1", IfName: "eth0"}})
	if err != nil || got.Attachment.Address != first.Attachment.Address {
		t.Fatalf("after the failed repeat: %+v, %v", got, err)
	}
	d.AddUnderlay("eth9", 1500)
	other, err := c.Add(ctx, addReq("red", "pod2"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Attachment.Address == first.Attachment.Address {
		t.Fatalf("pod2 got %s, which pod1 still has", other.Attachment.Address)
	}
	// The /30 has two addresses, both taken: pod1's was not freed.
	if _, err := c.Add(ctx, addReq("red", "pod3")); !errors.Is(err, api.ErrPoolExhausted) {
		t.Fatalf("third pod in a /30: err = %v, want pool exhausted", err)
	}
}
