package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	bolt "go.etcd.io/bbolt"

	"github.com/isthmus-net/isthmus/cni/api"
	"github.com/isthmus-net/isthmus/cni/ipam"
	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/nos"
)

// Core is what the daemon needs from the transactional core (nos.Core
// implements it).
type Core interface {
	// CommitEntries runs one validated, persisted, reconciled transaction
	// that changes only the entries named by paths; edit sees only those.
	CommitEntries(ctx context.Context, who string, paths []*gpb.Path, edit func(part *gen.Device) error) (uint64, error)
	// Read calls fn with the running configuration and state, read-only.
	Read(fn func(config, state *gen.Device) error) error
}

// committer is the author name of the daemon's commits.
const committer = "cni"

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithReadiness sets a check Status runs: a non-nil error means not ready
// (for example, the dataplane is not loaded yet).
func WithReadiness(ready func() error) Option { return func(s *Server) { s.ready = ready } }

// Server implements api.Server on top of the core and its store.
type Server struct {
	cfg   Config
	gw    netip.Addr
	core  Core
	db    *bolt.DB
	log   *slog.Logger
	ready func() error
	group *groupCommitter
	locks keyLocks // one ADD, DEL or GC at a time per attachment
}

var _ api.Server = (*Server)(nil)

// New returns a server that commits through core and keeps its
// allocations in db (the core's store, nos.Store.DB()).
func New(cfg Config, core Core, db *bolt.DB, opts ...Option) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, gw: netip.MustParseAddr(cfg.Gateway), core: core, db: db, log: slog.Default(),
		group: &groupCommitter{core: core}}
	for _, o := range opts {
		o(s)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		if err := ipam.Init(tx); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketAttachments); err != nil {
			return fmt.Errorf("create bucket %q: %w", bucketAttachments, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("init cni store: %w", err)
	}
	return s, nil
}

// Config returns the server's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// checkID checks an attachment ID as the plugin does, since the socket is
// where the daemon's trust ends.
func checkID(id api.AttachmentID) error { return id.Validate() }

func checkAdd(req *api.AddRequest) error {
	if err := checkID(req.AttachmentID); err != nil {
		return err
	}
	if err := api.ValidateNetworkName(req.Network); err != nil {
		return err
	}
	if err := req.Pod.Validate(); err != nil {
		return err
	}
	if !filepath.IsAbs(req.Netns) || strings.IndexByte(req.Netns, 0) >= 0 {
		return fmt.Errorf("%w: netns path %s is not absolute", api.ErrInvalid, api.Quote(req.Netns))
	}
	if req.HostIfName == "" || len(req.HostIfName) > 15 {
		return fmt.Errorf("%w: host interface name %q", api.ErrInvalid, req.HostIfName)
	}
	for _, m := range []string{req.HostMAC, req.PodMAC} {
		if _, err := net.ParseMAC(m); err != nil {
			return fmt.Errorf("%w: mac %q: %w", api.ErrInvalid, m, err)
		}
	}
	return nil
}

// Add allocates the pod's address and commits its attachment.
func (s *Server) Add(ctx context.Context, req *api.AddRequest) (*api.AddResponse, error) {
	if err := checkAdd(req); err != nil {
		return nil, err
	}
	defer s.locks.lock(recordKey(req.AttachmentID))()
	var vrf string
	var pools []netip.Prefix
	var mtu int
	var underlay string
	err := s.core.Read(func(cfg, _ *gen.Device) error {
		if err := checkHostIfName(cfg, *req); err != nil {
			return err
		}
		var err error
		if vrf, err = chooseVRF(s.cfg, cfg, req.Network, req.Pod); err != nil {
			return err
		}
		mtu = podMTU(s.cfg, cfg)
		underlay = underlayName(cfg)
		pools, err = vrfPools(cfg, vrf)
		return err
	})
	if err != nil {
		return nil, err
	}
	a := api.Attachment{
		AttachmentID: req.AttachmentID,
		Network:      req.Network,
		VRF:          vrf,
		Netns:        req.Netns,
		Pod:          req.Pod,
		HostIfName:   req.HostIfName,
		HostMAC:      req.HostMAC,
		PodMAC:       req.PodMAC,
		Gateway:      s.gw,
		MTU:          mtu,
		Underlay:     underlay,
	}
	var prev *api.Attachment // the record of an earlier ADD of the same attachment
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if prev, err = getRecord(tx, req.AttachmentID); err != nil {
			return err
		}
		if prev != nil && prev.VRF != vrf {
			// A repeated ADD that now maps elsewhere: give the old address back.
			if _, _, err := ipam.Release(tx, prev.VRF, recordKey(prev.AttachmentID)); err != nil {
				return err
			}
		}
		addr, err := ipam.Allocate(tx, vrf, pools, recordKey(req.AttachmentID))
		if errors.Is(err, ipam.ErrExhausted) || errors.Is(err, ipam.ErrNoPool) {
			return fmt.Errorf("%w: vrf %q: %w", api.ErrPoolExhausted, vrf, err)
		}
		if err != nil {
			return err
		}
		a.Address = netip.PrefixFrom(addr, addr.BitLen())
		return putRecord(tx, a)
	})
	if err != nil {
		return nil, fmt.Errorf("allocate address for %s: %w", recordKey(req.AttachmentID), err)
	}
	rev, err := s.group.commit(ctx, []*gpb.Path{nos.InterfaceEntry(a.HostIfName)}, func(d *gen.Device) error { return putAttachment(d, a) })
	if err != nil {
		err = fmt.Errorf("commit attachment %s: %w", recordKey(a.AttachmentID), err)
		if rerr := s.undoAllocation(a, prev); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	s.log.Info("pod attached", "container", a.ContainerID, "ifname", a.IfName,
		"vrf", a.VRF, "address", a.Address, "interface", a.HostIfName, "revision", rev)
	if err := s.publishPoolState(a.VRF); err != nil {
		s.log.Warn("pod attached, pool state not updated", "vrf", a.VRF, "err", err)
	}
	return &api.AddResponse{Attachment: a, Revision: rev}, nil
}

// undoAllocation takes back an allocation whose commit failed. When an
// earlier ADD of the same attachment committed it in the same VRF, the
// address is still configured: only its record goes back as it was.
func (s *Server) undoAllocation(a api.Attachment, prev *api.Attachment) error {
	if prev == nil || prev.VRF != a.VRF {
		return s.forget(a)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return putRecord(tx, *prev) }); err != nil {
		return fmt.Errorf("restore %s: %w", recordKey(a.AttachmentID), err)
	}
	return nil
}

// forget releases an attachment's address and drops its record.
func (s *Server) forget(a api.Attachment) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, _, err := ipam.Release(tx, a.VRF, recordKey(a.AttachmentID)); err != nil {
			return err
		}
		return deleteRecord(tx, a.AttachmentID)
	})
	if err != nil {
		return fmt.Errorf("release %s: %w", recordKey(a.AttachmentID), err)
	}
	return nil
}

// Del removes the attachment from the configuration, then releases its
// address, so the address is never reused while still configured.
func (s *Server) Del(ctx context.Context, req *api.DelRequest) (*api.DelResponse, error) {
	if err := checkID(req.AttachmentID); err != nil {
		return nil, err
	}
	defer s.locks.lock(recordKey(req.AttachmentID))()
	var a *api.Attachment
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		a, err = getRecord(tx, req.AttachmentID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if a == nil {
		return &api.DelResponse{}, nil
	}
	if err := s.detach(ctx, []api.Attachment{*a}); err != nil {
		return nil, err
	}
	s.log.Info("pod detached", "container", a.ContainerID, "ifname", a.IfName, "vrf", a.VRF, "address", a.Address)
	return &api.DelResponse{Attachment: a}, nil
}

// detach removes attachments from the configuration in one commit, then
// releases their addresses.
func (s *Server) detach(ctx context.Context, as []api.Attachment) error {
	entries := make([]*gpb.Path, len(as))
	for i, a := range as {
		entries[i] = nos.InterfaceEntry(a.HostIfName)
	}
	_, err := s.group.commit(ctx, entries, func(d *gen.Device) error {
		for _, a := range as {
			removeAttachment(d, a)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit removal of %d attachments: %w", len(as), err)
	}
	var errs []error
	vrfs := make(map[string]bool)
	for _, a := range as {
		if err := s.forget(a); err != nil {
			errs = append(errs, err)
		}
		vrfs[a.VRF] = true
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for vrf := range vrfs {
		if err := s.publishPoolState(vrf); err != nil {
			s.log.Warn("pods detached, pool state not updated", "vrf", vrf, "err", err)
		}
	}
	return nil
}

// Get returns one attachment.
func (s *Server) Get(ctx context.Context, req *api.GetRequest) (*api.GetResponse, error) {
	if err := checkID(req.AttachmentID); err != nil {
		return nil, err
	}
	var a *api.Attachment
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		a, err = getRecord(tx, req.AttachmentID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, fmt.Errorf("%w: %s", api.ErrNoAttachment, recordKey(req.AttachmentID))
	}
	var inTree bool
	if err := s.core.Read(func(cfg, _ *gen.Device) error {
		intf := cfg.GetInterfaces().GetInterface(a.HostIfName)
		inTree = intf != nil && ownedBy(intf, a.AttachmentID)
		return nil
	}); err != nil {
		return nil, err
	}
	if !inTree {
		return nil, fmt.Errorf("%w: %s is not in the configuration", api.ErrNoAttachment, recordKey(req.AttachmentID))
	}
	return &api.GetResponse{Attachment: *a}, nil
}

// GC removes the attachments of a network that are not in the valid list.
func (s *Server) GC(ctx context.Context, req *api.GCRequest) (*api.GCResponse, error) {
	if err := api.ValidateNetworkName(req.Network); err != nil {
		return nil, err
	}
	valid := make(map[api.AttachmentID]bool, len(req.Valid))
	for _, id := range req.Valid {
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("valid attachment: %w", err)
		}
		valid[id] = true
	}
	staleRecords := func() ([]api.Attachment, error) {
		var stale []api.Attachment
		err := s.db.View(func(tx *bolt.Tx) error {
			all, err := allRecords(tx)
			for _, a := range all {
				if a.Network == req.Network && !valid[a.AttachmentID] {
					stale = append(stale, a)
				}
			}
			return err
		})
		return stale, err
	}
	stale, err := staleRecords()
	if err != nil {
		return nil, err
	}
	if len(stale) == 0 {
		return &api.GCResponse{}, nil
	}
	keys := make([]string, len(stale))
	for i, a := range stale {
		keys[i] = recordKey(a.AttachmentID)
	}
	defer s.locks.lock(keys...)()
	// Under the locks, look again: a DEL may have come first. Attachments
	// that appeared since were not locked and are left for the next GC.
	locked := make(map[string]bool, len(keys))
	for _, k := range keys {
		locked[k] = true
	}
	again, err := staleRecords()
	if err != nil {
		return nil, err
	}
	stale = slices.DeleteFunc(again, func(a api.Attachment) bool { return !locked[recordKey(a.AttachmentID)] })
	if len(stale) == 0 {
		return &api.GCResponse{}, nil
	}
	if err := s.detach(ctx, stale); err != nil {
		return nil, err
	}
	s.log.Info("stale pods detached", "network", req.Network, "count", len(stale))
	return &api.GCResponse{Removed: stale}, nil
}

// Status reports whether ADD would be served for the network: the
// readiness check passes and, when the network maps to one VRF, it exists.
func (s *Server) Status(ctx context.Context, req *api.StatusRequest) (*api.StatusResponse, error) {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			return &api.StatusResponse{Reason: err.Error()}, nil
		}
	}
	if req.Network == "" || s.cfg.Mode == ModeNamespaceIsolation {
		return &api.StatusResponse{Ready: true}, nil
	}
	vrf, err := ChooseVRF(s.cfg, req.Network, api.Pod{})
	if err != nil {
		return &api.StatusResponse{Reason: err.Error()}, nil
	}
	err = s.core.Read(func(cfg, _ *gen.Device) error {
		_, err := vrfPools(cfg, vrf)
		return err
	})
	if err != nil {
		return &api.StatusResponse{Reason: err.Error()}, nil
	}
	return &api.StatusResponse{Ready: true}, nil
}
