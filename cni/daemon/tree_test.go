package daemon

import (
	"testing"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

func TestPodMTU(t *testing.T) {
	underlay := func(d *gen.Device, name string, mtu uint16) {
		c := d.GetOrCreateInterfaces().GetOrCreateInterface(name).GetOrCreateConfig()
		c.Type = gen.IsthmusTypes_InterfaceType_UNDERLAY
		c.Mtu = ygot.Uint16(mtu)
	}
	tests := []struct {
		name  string
		cfg   Config
		build func(d *gen.Device)
		want  int
	}{
		{"nothing configured", Config{}, func(*gen.Device) {}, 1450},
		{"configured mtu wins", Config{MTU: 1400}, func(d *gen.Device) { underlay(d, "eth0", 9000) }, 1400},
		{"first underlay by name", Config{}, func(d *gen.Device) { underlay(d, "eth1", 1500); underlay(d, "eth0", 9000) }, 8950},
		{"tunnel's underlay interface", Config{}, func(d *gen.Device) {
			underlay(d, "eth0", 9000)
			underlay(d, "eth1", 1600)
			d.GetOrCreateTunnel().GetOrCreateConfig().UnderlayInterface = ygot.String("eth1")
		}, 1550},
		{"tunnel mtu", Config{}, func(d *gen.Device) {
			underlay(d, "eth0", 9000)
			d.GetOrCreateTunnel().GetOrCreateConfig().Mtu = ygot.Uint16(1400)
		}, 1350},
		{"other overhead", Config{EncapOverhead: 32}, func(*gen.Device) {}, 1468},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &gen.Device{}
			tt.build(d)
			if got := podMTU(tt.cfg.WithDefaults(), d); got != tt.want {
				t.Fatalf("podMTU = %d, want %d", got, tt.want)
			}
		})
	}
}
