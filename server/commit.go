package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Commit confirmed (gnmi_ext.Commit, openconfig/reference
// rpc/gnmi/gnmi-commit-confirmed.md): a Set carrying the extension with
// the commit action applies its changes and starts a timer; unless a Set
// with the confirm action and the same id comes before it runs out, the
// changes are rolled back. Cancel rolls them back at once; set rollback
// duration moves the deadline. One confirmed commit waits at a time, and
// while it does every Set without the extension is FailedPrecondition.
// The core stores the pending commit, so it survives a restart.

// commitExtension returns the commit extension of a Set, or nil; every
// other extension but Depth (refused before) is Unimplemented.
func commitExtension(exts []*gnmi_ext.Extension) (*gnmi_ext.Commit, error) {
	var commit *gnmi_ext.Commit
	for _, x := range exts {
		c := x.GetCommit()
		if c == nil {
			return nil, status.Error(codes.Unimplemented, "set extensions other than commit are not supported")
		}
		if commit != nil {
			return nil, status.Error(codes.InvalidArgument, "two commit extensions in one Set")
		}
		commit = c
	}
	return commit, nil
}

// setCommit carries out the action of a commit extension.
func (s *Server) setCommit(ctx context.Context, req *gpb.SetRequest, commit *gnmi_ext.Commit) (*gpb.SetResponse, error) {
	id, user := commit.GetId(), committer(ctx)
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "commit extension: the id is empty")
	}
	ops := len(req.GetDelete()) + len(req.GetReplace()) + len(req.GetUpdate())
	respond := func(results []*gpb.UpdateResult) *gpb.SetResponse {
		return &gpb.SetResponse{Prefix: req.GetPrefix(), Response: results, Timestamp: time.Now().UnixNano()}
	}
	switch a := commit.GetAction().(type) {
	case *gnmi_ext.Commit_Commit:
		if _, ok, _ := rollbackRevision(req); ok {
			return nil, status.Errorf(codes.InvalidArgument, "commit %q: %s cannot be a confirmed commit", id, rollbackPath)
		}
		d, err := duration(a.Commit.GetRollbackDuration(), false)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "commit %q: rollback duration: %v", id, err)
		}
		norm, results, err := s.normalizeSet(req)
		if err != nil {
			return nil, err
		}
		rev, err := s.core.SetConfirmed(ctx, user, id, d, norm)
		if err != nil {
			return nil, setError(norm, err)
		}
		s.log.Info("confirmed commit", "id", id, "revision", rev, "user", user)
		return respond(results), nil
	case *gnmi_ext.Commit_Confirm:
		if ops > 0 {
			return nil, status.Errorf(codes.InvalidArgument, "commit %q: a confirm carries no changes", id)
		}
		if err := s.core.ConfirmCommit(ctx, user, id); err != nil {
			return nil, toStatus(err)
		}
		return respond(nil), nil
	case *gnmi_ext.Commit_Cancel:
		if ops > 0 {
			return nil, status.Errorf(codes.InvalidArgument, "commit %q: a cancel carries no changes", id)
		}
		if _, err := s.core.CancelCommit(ctx, user, id); err != nil {
			return nil, toStatus(err)
		}
		return respond(nil), nil
	case *gnmi_ext.Commit_SetRollbackDuration:
		if ops > 0 {
			return nil, status.Errorf(codes.InvalidArgument, "commit %q: setting the rollback duration carries no changes", id)
		}
		d, err := duration(a.SetRollbackDuration.GetRollbackDuration(), true)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "commit %q: rollback duration: %v", id, err)
		}
		if err := s.core.SetRollbackDuration(ctx, id, d); err != nil {
			return nil, toStatus(err)
		}
		return respond(nil), nil
	default:
		return nil, status.Errorf(codes.InvalidArgument, "commit %q: no action (commit, confirm, cancel or set rollback duration)", id)
	}
}

// duration checks a protobuf duration: absent is 0 unless required,
// negative or out of range is an error.
func duration(d *durationpb.Duration, required bool) (time.Duration, error) {
	if d.GetSeconds() == 0 && d.GetNanos() == 0 {
		if required {
			return 0, errors.New("missing or zero")
		}
		return 0, nil
	}
	if !d.IsValid() || d.AsDuration() <= 0 {
		return 0, fmt.Errorf("%ds %dns is not a positive duration", d.GetSeconds(), d.GetNanos())
	}
	return d.AsDuration(), nil
}

// refusePending refuses a Set without the commit extension while a
// confirmed commit waits for its confirmation.
func (s *Server) refusePending() error {
	if p, ok := s.core.PendingCommit(); ok {
		return status.Errorf(codes.FailedPrecondition, "commit %q waits for confirmation until %s: confirm or cancel it first", p.ID, p.Deadline.Format(time.RFC3339))
	}
	return nil
}
