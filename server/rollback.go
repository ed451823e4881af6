package server

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rollbackPath is the action path of a rollback: a Set that updates it with
// a revision number commits that revision's configuration again, as a new
// revision, through the same validation and reconcilers as any Set:
//
//	gnmic set --update-path /system/rollback --update-value 12
//
// It is an action, not data: nothing is stored at the path. The commit
// history is readable at /system/commits.
const rollbackPath = "/system/rollback"

// rollbackRevision reports whether req is a rollback, and to which revision.
func rollbackRevision(req *gpb.SetRequest) (uint64, bool, error) {
	var hit *gpb.Update
	for _, u := range req.GetUpdate() {
		full, err := fullPath(req.GetPrefix(), u.GetPath())
		if err == nil && pathString(full) == rollbackPath {
			hit = u
		}
	}
	if hit == nil {
		return 0, false, nil
	}
	if len(req.GetUpdate()) != 1 || len(req.GetReplace())+len(req.GetDelete()) > 0 {
		return 0, true, status.Errorf(codes.InvalidArgument, "%s: a rollback must be the only operation of its Set", rollbackPath)
	}
	rev, err := revisionOf(hit.GetVal())
	if err != nil {
		return 0, true, status.Errorf(codes.InvalidArgument, "%s: %v", rollbackPath, err)
	}
	return rev, true, nil
}

func revisionOf(v *gpb.TypedValue) (uint64, error) {
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_UintVal:
		return x.UintVal, nil
	case *gpb.TypedValue_IntVal:
		if x.IntVal > 0 {
			return uint64(x.IntVal), nil
		}
	case *gpb.TypedValue_StringVal:
		return strconv.ParseUint(strings.TrimSpace(x.StringVal), 10, 64)
	case *gpb.TypedValue_JsonVal, *gpb.TypedValue_JsonIetfVal:
		raw := v.GetJsonIetfVal()
		if raw == nil {
			raw = v.GetJsonVal()
		}
		var n json.Number
		if err := json.Unmarshal(raw, &n); err == nil {
			return strconv.ParseUint(n.String(), 10, 64)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return strconv.ParseUint(s, 10, 64)
		}
	}
	return 0, status.Error(codes.InvalidArgument, "want a positive revision number")
}

// rollback commits revision rev again.
func (s *Server) rollback(ctx context.Context, req *gpb.SetRequest, rev uint64, user string) (*gpb.SetResponse, error) {
	newRev, err := s.core.Rollback(ctx, user, rev)
	if err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("rollback", "to", rev, "revision", newRev, "user", user)
	res := []*gpb.UpdateResult{{Path: req.GetUpdate()[0].GetPath(), Op: gpb.UpdateResult_UPDATE}}
	return &gpb.SetResponse{Prefix: req.GetPrefix(), Response: res, Timestamp: time.Now().UnixNano()}, nil
}
