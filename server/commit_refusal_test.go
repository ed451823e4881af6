package server

import (
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func commitExt(c *gnmi_ext.Commit) []*gnmi_ext.Extension {
	return []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Commit{Commit: c}}}
}

// TestCommitExtensionRefusals: malformed commit extensions are refused
// with the code the commit confirmed document gives, and a refused or
// failed confirmed commit leaves nothing pending.
func TestCommitExtensionRefusals(t *testing.T) {
	e := newTestEnv(t)
	e.addVRF(t, "red", "65000:1", "10.1.0.0/24")
	descr := vrfPath("red") + "/config/description"
	commit := func(id string, d *durationpb.Duration) *gnmi_ext.Commit {
		return &gnmi_ext.Commit{Id: id, Action: &gnmi_ext.Commit_Commit{Commit: &gnmi_ext.CommitRequest{RollbackDuration: d}}}
	}
	confirm := &gnmi_ext.Commit{Id: "c", Action: &gnmi_ext.Commit_Confirm{Confirm: &gnmi_ext.CommitConfirm{}}}
	for _, tc := range []struct {
		name string
		req  *gpb.SetRequest
		code codes.Code
	}{
		{"no id", &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("x"))}, Extension: commitExt(commit("", nil))}, codes.InvalidArgument},
		{"no action", &gpb.SetRequest{Extension: commitExt(&gnmi_ext.Commit{Id: "c"})}, codes.InvalidArgument},
		{"negative duration", &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("x"))}, Extension: commitExt(commit("c", &durationpb.Duration{Seconds: -1}))}, codes.InvalidArgument},
		{"invalid change", &gpb.SetRequest{Update: []*gpb.Update{upd(t, vrfPath("red")+"/config/route-distinguisher", str("nonsense"))}, Extension: commitExt(commit("c", nil))}, codes.InvalidArgument},
		{"two commit extensions", &gpb.SetRequest{Extension: append(commitExt(confirm), commitExt(confirm)...)}, codes.InvalidArgument},
		{"confirm with none waiting", &gpb.SetRequest{Extension: commitExt(confirm)}, codes.FailedPrecondition},
		{"confirm carrying changes", &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("x"))}, Extension: commitExt(confirm)}, codes.InvalidArgument},
		{"zero new duration", &gpb.SetRequest{Extension: commitExt(&gnmi_ext.Commit{Id: "c", Action: &gnmi_ext.Commit_SetRollbackDuration{SetRollbackDuration: &gnmi_ext.CommitSetRollbackDuration{}}})}, codes.InvalidArgument},
		{"rollback as a confirmed commit", &gpb.SetRequest{Update: []*gpb.Update{upd(t, rollbackPath, &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 1}})}, Extension: commitExt(commit("c", nil))}, codes.InvalidArgument},
	} {
		_, err := e.cli.Set(admin(), tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.code)
		}
		if p, ok := e.core.PendingCommit(); ok {
			t.Fatalf("%s: left commit %q pending", tc.name, p.ID)
		}
	}
	// The default duration applies when none is given; /system/rollback
	// waits too.
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, descr, str("x"))}, Extension: commitExt(commit("c", nil))}); err != nil {
		t.Fatal(err)
	}
	if p, ok := e.core.PendingCommit(); !ok || time.Until(p.Deadline) < 9*time.Minute || time.Until(p.Deadline) > 10*time.Minute {
		t.Fatalf("pending %+v %v, want a deadline 10 minutes out", p, ok)
	}
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, rollbackPath, &gpb.TypedValue{Value: &gpb.TypedValue_UintVal{UintVal: 1}})}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("rollback while a commit waits: %v", err)
	}
}
