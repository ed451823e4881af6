package bgp

import (
	"net/netip"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// resendDelay is how long after a session comes up the speaker sends its
// table to that peer once more.
//
// GoBGP v4.8.0 (v4.9.0 too) handles each peer's messages on that peer's
// goroutine. A session coming up sends the table as it is at that moment
// and only afterwards marks the peer established; a path that another
// peer announces in between (or that we add) is in neither: the table
// sent did not hold it yet, and its propagation skipped the peer as not
// established. The peer would never learn it, until the path changed
// again or the session restarted. A second send of the table a moment
// after the session came up closes that gap; GoBGP skips peers not
// established, so the moment must be after GoBGP has marked the peer.
const resendDelay = time.Second

// resendAfterUp sends the table to addr again resendDelay after its
// session came up (its transitions-th), if that session is still the
// same one on the same speaker by then. During a graceful restart GoBGP
// itself sends the table to every peer once all have sent End-of-RIB.
func (r *Reconciler) resendAfterUp(sp *speaker, addr netip.Addr, transitions uint64) {
	t := time.NewTimer(resendDelay)
	defer t.Stop()
	select {
	case <-sp.ctx.Done():
		return
	case <-t.C:
	}
	r.mu.Lock()
	ps := r.peers[addr]
	same := r.sp == sp && ps != nil && ps.state == bgp.BGP_FSM_ESTABLISHED && ps.transitions == transitions && !r.restart
	r.mu.Unlock()
	if !same {
		return
	}
	if err := sp.resendTo(sp.ctx, addr); err != nil && sp.ctx.Err() == nil {
		r.log.Warn("bgp table not sent again after session up", "neighbor", addr, "err", err)
	}
}
