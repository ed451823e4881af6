package nos

import (
	"context"
	"errors"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// commitEntriesBase commits two VRFs, a pod interface and the tunnel.
func commitEntriesBase(t *testing.T) (*Core, string) {
	t.Helper()
	dir := t.TempDir()
	c := newTestCore(t, dir)
	base := &gpb.SetRequest{Update: []*gpb.Update{
		vrfUpdate(t, "a", 1), vrfUpdate(t, "b", 2),
		jsonUpdate(t, "/interfaces/interface[name=p1]/config", `{"name":"p1","type":"POD","network-instance":"a","ipv4-address":"10.0.1.5/32"}`),
		jsonUpdate(t, "/tunnel/config", `{"source-address":"192.0.2.1"}`),
	}}
	if _, err := c.Set(context.Background(), "t", base); err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func running(c *Core) *gen.Device {
	var d *gen.Device
	c.Read(func(cfg, _ *gen.Device) error { d = cfg; return nil })
	return d
}

func podConfig(name, vrf, addr string) *gen.IsthmusInterfaces_Interfaces_Interface_Config {
	return &gen.IsthmusInterfaces_Interfaces_Interface_Config{
		Name: ygot.String(name), Type: gen.IsthmusTypes_InterfaceType_POD,
		NetworkInstance: ygot.String(vrf), Ipv4Address: ygot.String(addr),
	}
}

// TestCommitEntriesSharesUntouchedEntries checks that a commit naming its
// entries hands the edit copies of those entries only, leaves every other
// entry the very same object in the new running configuration, never
// changes the previous running configuration, and stores a revision that
// reads back after a restart.
func TestCommitEntriesSharesUntouchedEntries(t *testing.T) {
	ctx := context.Background()
	c, dir := commitEntriesBase(t)
	before := running(c)
	beforeJSON, _ := encodeConfig(before)

	rev, err := c.CommitEntries(ctx, "cni", []*gpb.Path{InterfaceEntry("p2"), InterfaceEntry("p1")}, func(part *gen.Device) error {
		if n := len(NetworkInstances(part)); n != 0 || part.Tunnel != nil {
			t.Errorf("the edit sees %d VRFs and tunnel %v it did not name", n, part.Tunnel)
		}
		if p1 := Interfaces(part)["p1"]; p1 == nil || p1 == Interfaces(before)["p1"] {
			t.Error("the edit does not get its own copy of p1")
		}
		part.GetInterfaces().GetInterface("p1").GetConfig().Description = ygot.String("changed")
		part.GetOrCreateInterfaces().GetOrCreateInterface("p2").Config = podConfig("p2", "b", "10.0.2.7/32")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := running(c)
	if NetworkInstances(after)["a"] != NetworkInstances(before)["a"] || NetworkInstances(after)["b"] != NetworkInstances(before)["b"] {
		t.Error("the commit copied VRFs it does not name")
	}
	if after.Tunnel != before.Tunnel {
		t.Error("the commit copied the tunnel, which it does not name")
	}
	if got := Interfaces(after)["p1"].GetConfig().GetDescription(); got != "changed" {
		t.Errorf("p1 description = %q, want changed", got)
	}
	if Interfaces(after)["p2"].GetConfig().GetNetworkInstance() != "b" {
		t.Error("p2 was not added")
	}
	if got, _ := encodeConfig(before); string(got) != string(beforeJSON) {
		t.Fatalf("the previous running configuration changed:\n%s\nwant\n%s", got, beforeJSON)
	}

	// Removing an entry, and changing the tunnel, the same way.
	if _, err := c.CommitEntries(ctx, "cni", []*gpb.Path{InterfaceEntry("p1"), TunnelEntry()}, func(part *gen.Device) error {
		part.GetInterfaces().DeleteInterface("p1")
		part.GetTunnel().GetConfig().SourceAddress = ygot.String("192.0.2.9")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	last := running(c)
	if Interfaces(last)["p1"] != nil || Interfaces(last)["p2"] != Interfaces(after)["p2"] {
		t.Error("p1 was not removed, or p2 was copied")
	}
	if got := last.GetTunnel().GetConfig().GetSourceAddress(); got != "192.0.2.9" {
		t.Errorf("tunnel source = %q", got)
	}
	lastJSON, _ := encodeConfig(last)

	// An edit that changes nothing makes no revision.
	again, err := c.CommitEntries(ctx, "cni", []*gpb.Path{InterfaceEntry("p2")}, func(*gen.Device) error { return nil })
	if err != nil || again != rev+1 {
		t.Errorf("empty commit: revision %d, %v; want %d", again, err, rev+1)
	}

	c.Stop(ctx)
	c.store.Close()
	r, stop := restartCore(t, dir)
	defer stop()
	if got, _ := encodeConfig(running(r)); string(got) != string(lastJSON) {
		t.Fatalf("restored configuration:\n%s\nwant\n%s", got, lastJSON)
	}
}

// TestCommitEntriesRefusesWhatItDoesNotName checks that an edit that
// leaves anything outside the entries it names is refused and changes
// nothing, that bad entry paths are refused, and that the named entries
// are validated as a Set's are.
func TestCommitEntriesRefusesWhatItDoesNotName(t *testing.T) {
	ctx := context.Background()
	c, _ := commitEntriesBase(t)
	rev := c.Revision()
	beforeJSON, _ := encodeConfig(running(c))
	for name, tc := range map[string]struct {
		paths []*gpb.Path
		edit  func(*gen.Device) error
		want  string
	}{
		"other entry": {
			paths: []*gpb.Path{InterfaceEntry("p2")},
			edit: func(d *gen.Device) error {
				d.GetOrCreateInterfaces().GetOrCreateInterface("p2").Config = podConfig("p2", "b", "10.0.2.7/32")
				d.GetOrCreateInterfaces().GetOrCreateInterface("p3").Config = podConfig("p3", "b", "10.0.2.8/32")
				return nil
			},
			want: "/interfaces/interface[p3]",
		},
		"other list": {
			paths: []*gpb.Path{InterfaceEntry("p2")},
			edit: func(d *gen.Device) error {
				d.GetOrCreateNetworkInstances().GetOrCreateNetworkInstance("a").GetOrCreateConfig().Description = ygot.String("x")
				return nil
			},
			want: "/network-instances/network-instance[a]",
		},
		"tunnel": {
			paths: []*gpb.Path{InterfaceEntry("p2")},
			edit: func(d *gen.Device) error {
				d.GetOrCreateTunnel().GetOrCreateConfig().Mtu = ygot.Uint16(1400)
				return nil
			},
			want: "/tunnel/config/mtu",
		},
		"not an entry": {
			paths: []*gpb.Path{mustPath(t, "/interfaces")},
			edit:  func(*gen.Device) error { return nil },
			want:  "whole entries",
		},
		"not in the schema": {
			paths: []*gpb.Path{mustPath(t, "/nothing[name=x]")},
			edit:  func(*gen.Device) error { return nil },
			want:  "unknown element",
		},
		"invalid entry": {
			paths: []*gpb.Path{InterfaceEntry("p2")},
			edit: func(d *gen.Device) error {
				d.GetOrCreateInterfaces().GetOrCreateInterface("p2").Config = podConfig("p2", "nosuch", "10.0.2.7/32")
				return nil
			},
			want: "nosuch",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.CommitEntries(ctx, "cni", tc.paths, tc.edit)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid naming %q", err, tc.want)
			}
			if got, _ := encodeConfig(running(c)); string(got) != string(beforeJSON) || c.Revision() != rev {
				t.Fatalf("a refused commit changed the running configuration:\n%s", got)
			}
		})
	}
}
