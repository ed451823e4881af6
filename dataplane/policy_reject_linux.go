package dataplane

import "fmt"

// TunnelRejects counts, in one VRF, the answers to packets from the
// tunnel that a REJECT refused (bpf/policy_reject_tunnel.h).
type TunnelRejects struct {
	Sent   uint64 // a reset or ICMP unreachable encapsulated to the sender's host
	Unsent uint64 // the VRF has no route back to the sender through the tunnel: dropped only
}

// VRFTunnelRejects reads the REJECT answers to tunnelled packets of vrf.
func (d *Dataplane) VRFTunnelRejects(vrf string) (TunnelRejects, error) {
	d.mu.Lock()
	id, err := d.vrfID(vrf, false)
	d.mu.Unlock()
	if err != nil {
		return TunnelRejects{}, err
	}
	var per [][2]uint64
	if err := d.maps.PolTunnelAnswers.Lookup(id, &per); err != nil {
		return TunnelRejects{}, fmt.Errorf("read tunnel reject counters of vrf %q: %w", vrf, err)
	}
	var s TunnelRejects
	for _, v := range per {
		s.Sent += v[0]
		s.Unsent += v[1]
	}
	return s, nil
}
