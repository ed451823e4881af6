package kube_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"github.com/openconfig/ygot/ygot"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube"
	"github.com/isthmus-net/isthmus/kube/kubetest"
)

// commitAction sends a Set carrying only the commit extension (and, for
// the commit action, one change of the default instance's description).
func commitAction(t *testing.T, nd *kubetest.Node, c *gnmi_ext.Commit) {
	t.Helper()
	req := &gpb.SetRequest{Extension: []*gnmi_ext.Extension{{Ext: &gnmi_ext.Extension_Commit{Commit: c}}}}
	if _, ok := c.GetAction().(*gnmi_ext.Commit_Commit); ok {
		p, err := ygot.StringToStructuredPath("/network-instances/network-instance[name=default]/config/description")
		if err != nil {
			t.Fatal(err)
		}
		req.Update = []*gpb.Update{{Path: p, Val: &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "maintenance"}}}}
	}
	ctx, cancel := context.WithTimeout(nd.Context(), 10*time.Second)
	defer cancel()
	if _, err := nd.Client().Set(ctx, req); err != nil {
		t.Fatalf("commit %s on %s: %v", c.GetId(), nd.Name, err)
	}
}

// TestChangesWaitForConfirmedCommit: while a confirmed commit made on a
// node waits for its confirmation, the node refuses the controller's
// Sets; the controller keeps the change, says in the node's condition
// which commit holds it up, and applies it once the commit is confirmed.
func TestChangesWaitForConfirmedCommit(t *testing.T) {
	e := newEnv(t, 1)
	nd := e.nodes[0]
	e.runController(e.config("a"))
	e.waitNodeCondition(nd.Name, corev1.ConditionTrue, kube.NodeReasonConfigured)

	commitAction(t, nd, &gnmi_ext.Commit{Id: "maint-7", Action: &gnmi_ext.Commit_Commit{Commit: &gnmi_ext.CommitRequest{}}})
	e.mustCreateNetwork(network("red", 100, "65000:100", "10.1.0.0/16"))
	eventually(t, 30*time.Second, func() (bool, string) {
		n, err := e.c.Client.CoreV1().Nodes().Get(context.Background(), nd.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range n.Status.Conditions {
			if c.Type == kube.NodeConditionType {
				ok := c.Status == corev1.ConditionFalse && c.Reason == kube.NodeReasonCommitWaiting && strings.Contains(c.Message, `"maint-7"`)
				return ok, fmt.Sprintf("condition %+v, want %s naming maint-7", c, kube.NodeReasonCommitWaiting)
			}
		}
		return false, "no condition"
	})
	if v, err := vrfOn(nd, "red"); err != nil || v != nil {
		t.Fatalf("vrf red on the node while the commit waits: %v, %v", v, err)
	}

	commitAction(t, nd, &gnmi_ext.Commit{Id: "maint-7", Action: &gnmi_ext.Commit_Confirm{Confirm: &gnmi_ext.CommitConfirm{}}})
	e.waitVRF(e.nodes, "red", true, 45*time.Second)
	e.waitNodeCondition(nd.Name, corev1.ConditionTrue, kube.NodeReasonConfigured)
}
