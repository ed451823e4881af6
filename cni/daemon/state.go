package daemon

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/openconfig/ygot/ygot"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/cni/ipam"
	"github.com/isthmus-net/isthmus/gen"
)

// stateWriter is the core's state API (nos.Core has it); the daemon
// publishes how many addresses each pool has handed out through it.
type stateWriter interface {
	UpdateState(path string, st ygot.GoStruct) error
}

// publishPoolState writes address-pool/state/allocated for every pool of
// the given VRFs. A core without a state API is skipped.
func (s *Server) publishPoolState(vrfs ...string) error {
	sw, ok := s.core.(stateWriter)
	if !ok {
		return nil
	}
	var errs []error
	for _, vrf := range vrfs {
		var pools []netip.Prefix
		if err := s.core.Read(func(cfg, _ *gen.Device) error {
			var err error
			pools, err = vrfPools(cfg, vrf)
			return err
		}); err != nil {
			continue // the VRF or its pools are gone: nothing to report
		}
		errs = append(errs, writePoolState(sw, s.db, vrf, pools))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish pool state: %w", err)
	}
	return nil
}

// writePoolState writes address-pool/state/allocated for each of the
// pools of vrf, counted from the IPAM records in db.
func writePoolState(sw stateWriter, db *bolt.DB, vrf string, pools []netip.Prefix) error {
	var allocated map[netip.Addr]string
	if err := db.View(func(tx *bolt.Tx) (err error) {
		allocated, err = ipam.Allocated(tx, vrf)
		return err
	}); err != nil {
		return err
	}
	var errs []error
	for _, p := range pools {
		var n uint32
		for a := range allocated {
			if p.Contains(a) {
				n++
			}
		}
		path := fmt.Sprintf("/network-instances/network-instance[name=%s]/address-pools/address-pool[prefix=%s]/state", vrf, p)
		st := &gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_AddressPools_AddressPool_State{
			Prefix:    ygot.String(p.String()),
			Allocated: ygot.Uint32(n),
		}
		if err := sw.UpdateState(path, st); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
