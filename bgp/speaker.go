package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// speaker is one running GoBGP server and the watch on it. It is created
// when BGP is configured and replaced when the AS or router ID changes.
type speaker struct {
	srv      *server.BgpServer
	ctx      context.Context    // the event watch's, done once the speaker stops; set once started
	cancel   context.CancelFunc // ends the event watch
	grpcAddr string             // GoBGP's gRPC API, empty for none
	// stopped is set once GoBGP's BGP side has stopped (see stop).
	stopped *atomic.Bool
}

// startSpeaker starts GoBGP with the global settings, defines the export
// policies and starts watching what peers send (one event per UPDATE, and
// the withdrawals GoBGP makes when a session ends), peer states and
// End-of-RIB markers. grpcAddr empty means no GoBGP gRPC listener.
//
// Import does its own selection, so GoBGP's best-path watch is not used:
// it costs an event, a map and four cloned slices per path on GoBGP's main
// loop; the Adj-RIB-In watch costs one event per UPDATE.
func startSpeaker(ctx context.Context, log *slog.Logger, lvl *slog.LevelVar, g globalSpec, grpcAddr string, transit bool, cb server.WatchEventMessageCallbacks) (*speaker, error) {
	stopped := &atomic.Bool{}
	opts := []server.ServerOption{server.LoggerOption(gobgpLogger(log, stopped), lvl)}
	if grpcAddr != "" {
		if err := checkAPIFree(grpcAddr); err != nil {
			return nil, err
		}
		opts = append(opts, server.GrpcListenAddress(grpcAddr))
	}
	srv := server.NewBgpServer(opts...)
	go srv.Serve()
	sp := &speaker{srv: srv, cancel: func() {}, grpcAddr: grpcAddr, stopped: stopped}
	if grpcAddr != "" {
		if err := waitAPI(ctx, grpcAddr, true); err != nil {
			return nil, errors.Join(err, sp.stop(false))
		}
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: globalToAPI(g)}); err != nil {
		err = fmt.Errorf("start bgp as %d router-id %s: %w", g.as, g.routerID, err)
		return nil, errors.Join(err, sp.stop(false))
	}
	for _, p := range exportPolicies() {
		if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p}); err != nil {
			return nil, errors.Join(fmt.Errorf("add policy %s: %w", p.Name, err), sp.stop(false))
		}
	}
	if err := sp.setTransit(ctx, transit); err != nil {
		return nil, errors.Join(err, sp.stop(false))
	}
	wctx, cancel := context.WithCancel(ctx)
	sp.ctx, sp.cancel = wctx, cancel
	err := srv.WatchEvent(wctx, cb, server.WatchUpdate(true, "", ""), server.WatchAdjInWithdraw(), server.WatchPeer(), server.WatchEor(true))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("watch bgp events: %w", err), sp.stop(false))
	}
	return sp, nil
}

// setTransit selects the export policy: local routes only, or transit.
func (sp *speaker) setTransit(ctx context.Context, transit bool) error {
	err := sp.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: exportAssignment(transit)})
	if err != nil {
		return fmt.Errorf("assign export policy (transit %t): %w", transit, err)
	}
	return nil
}

// stop stops the watch and all of GoBGP: sessions, listeners, its BFD
// loop and its gRPC API, so that a new speaker can bind the same ports at
// once. With graceful, sessions to peers that negotiated graceful restart
// are closed without a NOTIFICATION, so the peers keep our routes until
// we are back (RFC 4724).
func (sp *speaker) stop(graceful bool) error {
	sp.cancel()
	var errs []error
	if err := sp.srv.StopBgp(context.Background(), &api.StopBgpRequest{AllowGracefulRestart: graceful}); err != nil {
		errs = append(errs, fmt.Errorf("stop bgp speaker: %w", err))
	}
	// StopBgp leaves the BFD loop and the gRPC API running; Stop ends them.
	// Its own StopBgp then finds BGP stopped, which it logs as an error:
	// the logger drops that one message once stopped is set.
	sp.stopped.Store(true)
	sp.srv.Stop()
	if sp.grpcAddr != "" {
		errs = append(errs, waitAPI(context.Background(), sp.grpcAddr, false))
	}
	return errors.Join(errs...)
}

// addPeer, updatePeer and deletePeer change one session.
func (sp *speaker) addPeer(ctx context.Context, n neighborSpec, restarting bool) error {
	if err := sp.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: neighborToAPI(n, restarting)}); err != nil {
		return fmt.Errorf("add neighbor %s: %w", n.address, err)
	}
	return nil
}

func (sp *speaker) updatePeer(ctx context.Context, n neighborSpec) error {
	rsp, err := sp.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: neighborToAPI(n, false)})
	if err != nil {
		return fmt.Errorf("update neighbor %s: %w", n.address, err)
	}
	if rsp.GetNeedsSoftResetIn() {
		err := sp.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: n.address.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_IN})
		if err != nil {
			return fmt.Errorf("soft reset neighbor %s: %w", n.address, err)
		}
	}
	return nil
}

func (sp *speaker) deletePeer(ctx context.Context, addr netip.Addr) error {
	if err := sp.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("delete neighbor %s: %w", addr, err)
	}
	return nil
}

// resendTo sends our table to one peer again (a soft reset out of that
// session only).
func (sp *speaker) resendTo(ctx context.Context, addr netip.Addr) error {
	err := sp.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT})
	if err != nil {
		return fmt.Errorf("soft reset out neighbor %s: %w", addr, err)
	}
	return nil
}

// softResetOut re-sends our table to every peer, after the export policy
// changed.
func (sp *speaker) softResetOut(ctx context.Context) error {
	err := sp.srv.ResetPeer(ctx, &api.ResetPeerRequest{Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT})
	if err != nil {
		return fmt.Errorf("soft reset out: %w", err)
	}
	return nil
}

// advertise adds and withdraws exported routes, each in one GoBGP call, so
// a commit with many pods costs one round trip to the server loop.
func (sp *speaker) advertise(add, del []exportRoute) error {
	if len(del) > 0 {
		paths, err := routePaths(del, true)
		if err != nil {
			return err
		}
		if err := sp.srv.DeletePath(apiutil.DeletePathRequest{Paths: paths}); err != nil {
			return fmt.Errorf("withdraw %d routes: %w", len(paths), err)
		}
	}
	if len(add) > 0 {
		paths, err := routePaths(add, false)
		if err != nil {
			return err
		}
		if _, err := sp.srv.AddPath(apiutil.AddPathRequest{Paths: paths}); err != nil {
			return fmt.Errorf("advertise %d routes: %w", len(paths), err)
		}
	}
	return nil
}

func routePaths(rs []exportRoute, withdraw bool) ([]*apiutil.Path, error) {
	paths := make([]*apiutil.Path, 0, len(rs))
	for _, r := range rs {
		p, err := r.path(withdraw)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// peerCounters are GoBGP's per-peer VPNv4 counters.
type peerCounters struct {
	received, accepted, sent uint64
	peerRestartTime          uint32
}

// counters lists every peer's VPNv4 prefix counts; sent only when asked
// (GoBGP computes it by running its table through the export policy).
func (sp *speaker) counters(ctx context.Context, sent bool) (map[netip.Addr]peerCounters, error) {
	out := map[netip.Addr]peerCounters{}
	err := sp.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: sent}, func(p *api.Peer) {
		a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		var c peerCounters
		for _, af := range p.GetAfiSafis() {
			f := af.GetState().GetFamily()
			if f.GetAfi() != api.Family_AFI_IP || f.GetSafi() != api.Family_SAFI_MPLS_VPN {
				continue
			}
			c.received, c.accepted, c.sent = af.GetState().GetReceived(), af.GetState().GetAccepted(), af.GetState().GetAdvertised()
		}
		c.peerRestartTime = p.GetGracefulRestart().GetPeerRestartTime()
		out[a] = c
	})
	if err != nil {
		return nil, fmt.Errorf("list neighbors: %w", err)
	}
	return out, nil
}

// sessionState maps GoBGP's FSM state to the model's names.
func sessionState(s bgp.FSMState) string {
	switch s {
	case bgp.BGP_FSM_IDLE:
		return "IDLE"
	case bgp.BGP_FSM_CONNECT:
		return "CONNECT"
	case bgp.BGP_FSM_ACTIVE:
		return "ACTIVE"
	case bgp.BGP_FSM_OPENSENT:
		return "OPENSENT"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "OPENCONFIRM"
	case bgp.BGP_FSM_ESTABLISHED:
		return "ESTABLISHED"
	}
	return "IDLE"
}
