package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeConditionType is the Node condition the controller keeps: True once
// the node's isthmusd holds everything the controller intends for it.
const NodeConditionType corev1.NodeConditionType = "IsthmusNetworkReady"

// Reasons of the Node condition.
const (
	NodeReasonConfigured  = "Configured"
	NodeReasonPending     = "Pending"
	NodeReasonUnreachable = "Unreachable"
	NodeReasonNoBGP       = "NoBGP"
	NodeReasonNoAddress   = "NoAddress"
	// NodeReasonCommitWaiting: the node refuses the controller's changes
	// while a confirmed commit made there waits for its confirmation
	// (the message names it); they are sent again until it is confirmed,
	// cancelled or rolled back.
	NodeReasonCommitWaiting = "ConfirmedCommitWaiting"
)

// nodeCondition is the condition's status, reason and message for one node.
type nodeCondition struct {
	status          corev1.ConditionStatus
	reason, message string
}

// nodeConditionOf decides a node's condition from its intent and what its
// worker last reported.
func nodeConditionOf(nd nodeInfo, want nodeIntent, have *nodeConfig, err error) nodeCondition {
	switch {
	case nd.gnmi == "" || !nd.address.IsValid():
		return nodeCondition{corev1.ConditionFalse, NodeReasonNoAddress, "the node has no IPv4 InternalIP"}
	case have == nil && err != nil:
		return nodeCondition{corev1.ConditionFalse, NodeReasonUnreachable, err.Error()}
	case have == nil:
		return nodeCondition{corev1.ConditionFalse, NodeReasonPending, "isthmusd not read yet"}
	}
	missing := 0
	for name, v := range want.vrfs {
		if h, ok := have.vrfs[name]; !ok || !h.equal(v) {
			missing++
		}
	}
	extra := 0
	for name := range have.vrfs {
		if _, ok := want.vrfs[name]; !ok {
			extra++
		}
	}
	switch {
	case errors.Is(err, errCommitWaiting):
		return nodeCondition{corev1.ConditionFalse, NodeReasonCommitWaiting, fmt.Sprintf("%d VRFs to configure, %d to remove: %v", missing, extra, err)}
	case missing > 0 || extra > 0:
		msg := fmt.Sprintf("%d VRFs to configure, %d to remove", missing, extra)
		if err != nil {
			msg += ": " + err.Error()
		}
		return nodeCondition{corev1.ConditionFalse, NodeReasonPending, msg}
	case errors.Is(err, errNoBGP):
		return nodeCondition{corev1.ConditionFalse, NodeReasonNoBGP, fmt.Sprintf("%d VRFs configured; route reflector peers wait: %v", len(want.vrfs), err)}
	case err != nil:
		return nodeCondition{corev1.ConditionFalse, NodeReasonPending, err.Error()}
	}
	return nodeCondition{corev1.ConditionTrue, NodeReasonConfigured, fmt.Sprintf("%d VRFs configured", len(want.vrfs))}
}

// writeNodeConditions patches the condition of every node whose condition
// changed since it was last written.
func (l *leader) writeNodeConditions(ctx context.Context, s snapshot, intents map[string]nodeIntent) error {
	l.mu.Lock()
	conds := make(map[string]nodeCondition, len(s.nodes))
	for _, nd := range s.nodes {
		conds[nd.name] = nodeConditionOf(nd, intents[nd.name], l.have[nd.name], l.errs[nd.name])
	}
	l.mu.Unlock()
	var errs []error
	for name, c := range conds {
		if l.nodeWritten[name] == c {
			continue
		}
		now := metav1.Now()
		patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
			Type: NodeConditionType, Status: c.status, Reason: c.reason, Message: c.message,
			LastHeartbeatTime: now, LastTransitionTime: now,
		}}}})
		if err != nil {
			return fmt.Errorf("encode node condition: %w", err)
		}
		if _, err := l.c.kc.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
			errs = append(errs, fmt.Errorf("write condition of node %s: %w", name, err))
			continue
		}
		l.nodeWritten[name] = c
	}
	for name := range l.nodeWritten {
		if _, ok := conds[name]; !ok {
			delete(l.nodeWritten, name)
		}
	}
	return errors.Join(errs...)
}
