package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/nos"
)

// Set applies the request as one transaction of the core: deletes, then
// replaces, then updates; every one takes effect or none does. Errors name
// the path and the reason.
func (s *Server) Set(ctx context.Context, req *gpb.SetRequest) (*gpb.SetResponse, error) {
	if err := s.checkTarget(req.GetPrefix()); err != nil {
		return nil, err
	}
	if len(req.GetUnionReplace()) > 0 {
		return nil, status.Error(codes.Unimplemented, "union_replace is not supported")
	}
	if err := refuseDepth("Set", req.GetExtension()); err != nil {
		return nil, err
	}
	commit, err := commitExtension(req.GetExtension())
	if err != nil {
		return nil, err
	}
	if commit != nil {
		return s.setCommit(ctx, req, commit)
	}
	if err := s.refusePending(); err != nil {
		return nil, err
	}
	if rev, ok, err := rollbackRevision(req); ok || err != nil {
		if err != nil {
			return nil, err
		}
		return s.rollback(ctx, req, rev, committer(ctx))
	}
	norm, results, err := s.normalizeSet(req)
	if err != nil {
		return nil, err
	}
	if _, err := s.core.Set(ctx, committer(ctx), norm); err != nil {
		return nil, setError(norm, err)
	}
	return &gpb.SetResponse{Prefix: req.GetPrefix(), Response: results, Timestamp: time.Now().UnixNano()}, nil
}

// normalizeSet joins every path of req with its prefix, so the core sees
// plain paths, and lists the results the response echoes.
func (s *Server) normalizeSet(req *gpb.SetRequest) (*gpb.SetRequest, []*gpb.UpdateResult, error) {
	norm := &gpb.SetRequest{}
	results := make([]*gpb.UpdateResult, 0, len(req.GetDelete())+len(req.GetReplace())+len(req.GetUpdate()))
	for _, p := range req.GetDelete() {
		full, err := fullPath(req.GetPrefix(), p)
		if err != nil {
			return nil, nil, err
		}
		if isWildcard(full) {
			return nil, nil, status.Errorf(codes.InvalidArgument, "%s: wildcards are not allowed in Set", pathString(full))
		}
		norm.Delete = append(norm.Delete, full)
		results = append(results, &gpb.UpdateResult{Path: p, Op: gpb.UpdateResult_DELETE})
	}
	for _, group := range []struct {
		ups []*gpb.Update
		out *[]*gpb.Update
		op  gpb.UpdateResult_Operation
	}{
		{req.GetReplace(), &norm.Replace, gpb.UpdateResult_REPLACE},
		{req.GetUpdate(), &norm.Update, gpb.UpdateResult_UPDATE},
	} {
		for _, u := range group.ups {
			full, err := fullPath(req.GetPrefix(), u.GetPath())
			if err != nil {
				return nil, nil, err
			}
			if isWildcard(full) {
				return nil, nil, status.Errorf(codes.InvalidArgument, "%s: wildcards are not allowed in Set", pathString(full))
			}
			if u.GetVal() == nil {
				return nil, nil, status.Errorf(codes.InvalidArgument, "%s: no value", pathString(full))
			}
			if err := checkDuplicateKeys(s.core.SchemaRoot(), full, u.GetVal()); err != nil {
				return nil, nil, err
			}
			*group.out = append(*group.out, &gpb.Update{Path: full, Val: asIETF(u.GetVal())})
			results = append(results, &gpb.UpdateResult{Path: u.GetPath(), Op: group.op})
		}
	}
	return norm, results, nil
}

// setError turns the core's refusal of norm into a status.
func setError(norm *gpb.SetRequest, err error) error {
	var pe *nos.PathError
	if !errors.As(err, &pe) {
		// Schema validation reports schema paths without keys: name
		// the request's paths so the client knows which data it was.
		err = fmt.Errorf("set %s: %w", describe(norm), err)
	}
	return toStatus(err)
}

// committer names the author of a commit in the history.
func committer(ctx context.Context) string {
	if user := userFrom(ctx); user != "" {
		return user
	}
	return "anonymous"
}

// describe lists the paths of a request for an error message, at most a
// handful of them.
func describe(req *gpb.SetRequest) string {
	const most = 4
	var paths []string
	add := func(p *gpb.Path) {
		if len(paths) < most {
			paths = append(paths, pathString(p))
		}
	}
	n := len(req.GetDelete()) + len(req.GetReplace()) + len(req.GetUpdate())
	for _, p := range req.GetDelete() {
		add(p)
	}
	for _, u := range req.GetReplace() {
		add(u.GetPath())
	}
	for _, u := range req.GetUpdate() {
		add(u.GetPath())
	}
	s := strings.Join(paths, ", ")
	if n > most {
		s += fmt.Sprintf(" and %d more", n-most)
	}
	return s
}

// asIETF passes a JSON value (gnmic's default encoding) to the core as
// JSON_IETF: the two agree for leaves, and a subtree written with arrays
// for lists, as RFC 7951 has them, decodes the same either way.
func asIETF(v *gpb.TypedValue) *gpb.TypedValue {
	if js := v.GetJsonVal(); js != nil {
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: js}}
	}
	return v
}
