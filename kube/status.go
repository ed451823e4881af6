package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// writeStatus keeps finalizers and status of every network current.
func (l *leader) writeStatus(ctx context.Context, s snapshot, p plan) error {
	l.mu.Lock()
	have := make(map[string]*nodeConfig, len(l.have))
	for k, v := range l.have {
		have[k] = v
	}
	l.mu.Unlock()
	var errs []error
	for _, name := range sortedKeys(p.networks) {
		v := p.networks[name]
		if err := l.finalize(ctx, v, have); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := l.updateStatus(ctx, v, s, p, have); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// finalize adds the finalizer to a live network, and removes it from a
// deleted one once no pod uses it and no node holds its VRF.
func (l *leader) finalize(ctx context.Context, v *networkView, have map[string]*nodeConfig) error {
	vn := v.vn
	has := slices.Contains(vn.Finalizers, Finalizer)
	switch {
	case vn.DeletionTimestamp == nil && !has:
		c := vn.DeepCopy()
		c.Finalizers = append(c.Finalizers, Finalizer)
		return l.update(ctx, c)
	case vn.DeletionTimestamp != nil && has && !v.active:
		for _, h := range have {
			if h == nil {
				return nil // unknown: wait until the node is read
			}
			if _, ok := h.vrfs[vn.Name]; ok {
				return nil // still on this node
			}
		}
		c := vn.DeepCopy()
		c.Finalizers = slices.DeleteFunc(c.Finalizers, func(f string) bool { return f == Finalizer })
		l.c.log.Info("virtual network removed from every node", "network", vn.Name)
		return l.update(ctx, c)
	}
	return nil
}

func (l *leader) updateStatus(ctx context.Context, v *networkView, s snapshot, p plan, have map[string]*nodeConfig) error {
	vn := v.vn
	var st v1alpha1.VirtualNetworkStatus
	vn.Status.DeepCopyInto(&st)
	st.ObservedGeneration = vn.Generation
	st.Namespaces = v.namespaces
	st.Blocks = nil
	for node, prefix := range v.blocks {
		st.Blocks = append(st.Blocks, v1alpha1.NodeBlock{Node: node, Prefix: prefix})
	}
	sort.Slice(st.Blocks, func(i, j int) bool { return st.Blocks[i].Node < st.Blocks[j].Node })
	st.Nodes, st.ReadyNodes = 0, 0
	if v.accepted && v.active {
		for _, nd := range s.nodes {
			if nd.gnmi == "" || !nd.address.IsValid() {
				continue
			}
			st.Nodes++
			want, ok := p.nodes[nd.name].vrfs[vn.Name]
			if h := have[nd.name]; ok && h != nil {
				if got, ok := h.vrfs[vn.Name]; ok && got.equal(want) {
					st.ReadyNodes++
				}
			}
		}
	}
	accepted := metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValid,
		Message: "no conflict with other networks", ObservedGeneration: vn.Generation}
	if !v.accepted {
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, v.reason, v.message+"; no node gets this network"
	}
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: vn.Generation}
	switch {
	case !v.accepted:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonNotAccepted, "the network is not accepted"
	case vn.DeletionTimestamp != nil:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonInUseDeleting
		ready.Message = fmt.Sprintf("deleted; %d pods still use it", v.pods)
	case len(v.exhausted) > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonPoolExhausted
		ready.Message = fmt.Sprintf("no free block of /%d left in the subnets for %d nodes (%s first)", blockBits(vn), len(v.exhausted), v.exhausted[0])
	case st.Nodes == 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonNoNodes, "no node with an InternalIP"
	case st.ReadyNodes == st.Nodes:
		ready.Status, ready.Reason = metav1.ConditionTrue, v1alpha1.ReasonAllNodesReady
		ready.Message = fmt.Sprintf("the VRF runs on all %d nodes", st.Nodes)
	default:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonNodesPending
		ready.Message = fmt.Sprintf("the VRF runs on %d of %d nodes", st.ReadyNodes, st.Nodes)
	}
	meta.SetStatusCondition(&st.Conditions, accepted)
	meta.SetStatusCondition(&st.Conditions, ready)
	if reflect.DeepEqual(st, vn.Status) || (len(st.Blocks) == 0 && len(vn.Status.Blocks) == 0 && statusEqualNoBlocks(st, vn.Status)) {
		return nil
	}
	return l.patchStatus(ctx, vn.Name, st)
}

// patchStatus writes a network's status with a merge patch: only the leader
// writes status, so it needs no resource version (an update would fail on
// every write that races the informer). Lists are written whole, empty
// ones as [] so that the patch clears them.
func (l *leader) patchStatus(ctx context.Context, name string, st v1alpha1.VirtualNetworkStatus) error {
	list := func(v any, n int) any {
		if n == 0 {
			return []any{}
		}
		return v
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"observedGeneration": st.ObservedGeneration,
		"conditions":         list(st.Conditions, len(st.Conditions)),
		"blocks":             list(st.Blocks, len(st.Blocks)),
		"namespaces":         list(st.Namespaces, len(st.Namespaces)),
		"readyNodes":         st.ReadyNodes,
		"nodes":              st.Nodes,
	}})
	if err != nil {
		return fmt.Errorf("encode status of %s: %w", name, err)
	}
	_, err = l.c.dyn.Resource(vnGVR).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("write status of virtual network %s: %w", name, err)
	}
	return nil
}

// statusEqualNoBlocks compares statuses whose blocks are both empty (nil
// and empty slices alike).
func statusEqualNoBlocks(a, b v1alpha1.VirtualNetworkStatus) bool {
	a.Blocks, b.Blocks = nil, nil
	if len(a.Namespaces) == 0 && len(b.Namespaces) == 0 {
		a.Namespaces, b.Namespaces = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func blockBits(vn *v1alpha1.VirtualNetwork) int32 {
	if vn.Spec.BlockSize == 0 {
		return 26
	}
	return vn.Spec.BlockSize
}

// update writes vn (not its status) through the dynamic client.
func (l *leader) update(ctx context.Context, vn *v1alpha1.VirtualNetwork) error {
	u, err := toUnstructured(vn)
	if err != nil {
		return err
	}
	if _, err = l.c.dyn.Resource(vnGVR).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update virtual network %s: %w", vn.Name, err)
	}
	return nil
}

func toUnstructured(vn *v1alpha1.VirtualNetwork) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vn)
	if err != nil {
		return nil, fmt.Errorf("encode virtual network %s: %w", vn.Name, err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(v1alpha1.SchemeGroupVersion.String())
	u.SetKind(v1alpha1.Kind)
	return u, nil
}
