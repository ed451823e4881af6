package dataplane

import (
	"errors"
	"fmt"
	"net"

	"github.com/openconfig/ygot/ygot"
	"github.com/vishvananda/netlink"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// LinkState is the kernel's view of an interface the forwarder does not
// count itself (the underlay).
type LinkState struct {
	Ifindex int
	Up      bool
	Stats   netlink.LinkStatistics
}

// ErrNoLink marks an interface that does not exist in the daemon's
// network namespace.
var ErrNoLink = errors.New("no such link")

// LinkState reads the index, operational state and counters of the
// interface name from the kernel.
func (d *Dataplane) LinkState(name string) (LinkState, error) {
	d.mu.Lock()
	nl := d.nl
	d.mu.Unlock()
	if nl == nil {
		return LinkState{}, fmt.Errorf("read link %s: the dataplane is closed", name)
	}
	lnk, err := nl.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return LinkState{}, fmt.Errorf("read link %s: %w", name, ErrNoLink)
	}
	if err != nil {
		return LinkState{}, fmt.Errorf("read link %s: %w", name, err)
	}
	a := lnk.Attrs()
	ls := LinkState{Ifindex: a.Index, Up: a.OperState == netlink.OperUp || (a.OperState == netlink.OperUnknown && a.Flags&net.FlagUp != 0)}
	if a.Statistics != nil {
		ls.Stats = *a.Statistics
	}
	return ls, nil
}

// writeUnderlayState writes the state of every configured UNDERLAY
// interface from the kernel: ifindex, oper-status (NOT_PRESENT when the
// link is missing) and counters, drops included. Pod interfaces are
// counted by the forwarder instead (writeState).
func (r *Reconciler) writeUnderlayState(core *nos.Core, dp *Dataplane) error {
	var names []string
	if err := core.Read(func(cfg, _ *gen.Device) error {
		for name, i := range nos.Interfaces(cfg) {
			if i.GetConfig().GetType() == gen.IsthmusTypes_InterfaceType_UNDERLAY {
				names = append(names, name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		st := &gen.IsthmusInterfaces_Interfaces_Interface_State{OperStatus: gen.IsthmusTypes_OperStatus_NOT_PRESENT}
		ls, err := dp.LinkState(name)
		switch {
		case errors.Is(err, ErrNoLink):
		case err != nil:
			errs = append(errs, err)
			continue
		default:
			st.Ifindex = ygot.Uint32(uint32(ls.Ifindex))
			st.OperStatus = gen.IsthmusTypes_OperStatus_DOWN
			if ls.Up {
				st.OperStatus = gen.IsthmusTypes_OperStatus_UP
			}
			st.Counters = &gen.IsthmusInterfaces_Interfaces_Interface_State_Counters{
				InPkts: ygot.Uint64(ls.Stats.RxPackets), InOctets: ygot.Uint64(ls.Stats.RxBytes), InDrops: ygot.Uint64(ls.Stats.RxDropped),
				OutPkts: ygot.Uint64(ls.Stats.TxPackets), OutOctets: ygot.Uint64(ls.Stats.TxBytes), OutDrops: ygot.Uint64(ls.Stats.TxDropped),
			}
		}
		if err := core.UpdateState(fmt.Sprintf("/interfaces/interface[name=%s]/state", name), st); err != nil && !errors.Is(err, nos.ErrNoConfig) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
