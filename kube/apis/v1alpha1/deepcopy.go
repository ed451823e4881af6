package v1alpha1

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopyInto copies s into out.
func (s *VirtualNetworkSpec) DeepCopyInto(out *VirtualNetworkSpec) {
	*out = *s
	out.ImportRouteTargets = slices.Clone(s.ImportRouteTargets)
	out.ExportRouteTargets = slices.Clone(s.ExportRouteTargets)
	out.Subnets = slices.Clone(s.Subnets)
	if s.ExternalAccess != nil {
		out.ExternalAccess = &ExternalAccess{RouteTargets: slices.Clone(s.ExternalAccess.RouteTargets)}
	}
}

// DeepCopyInto copies s into out.
func (s *VirtualNetworkStatus) DeepCopyInto(out *VirtualNetworkStatus) {
	*out = *s
	out.Conditions = nil
	for _, c := range s.Conditions {
		var cc metav1.Condition
		c.DeepCopyInto(&cc)
		out.Conditions = append(out.Conditions, cc)
	}
	out.Blocks = slices.Clone(s.Blocks)
	out.Namespaces = slices.Clone(s.Namespaces)
}

// DeepCopyInto copies v into out.
func (v *VirtualNetwork) DeepCopyInto(out *VirtualNetwork) {
	*out = *v
	out.TypeMeta = v.TypeMeta
	v.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	v.Spec.DeepCopyInto(&out.Spec)
	v.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a copy of v.
func (v *VirtualNetwork) DeepCopy() *VirtualNetwork {
	if v == nil {
		return nil
	}
	out := new(VirtualNetwork)
	v.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (v *VirtualNetwork) DeepCopyObject() runtime.Object { return v.DeepCopy() }

// DeepCopyInto copies l into out.
func (l *VirtualNetworkList) DeepCopyInto(out *VirtualNetworkList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = make([]VirtualNetwork, len(l.Items))
	for i := range l.Items {
		l.Items[i].DeepCopyInto(&out.Items[i])
	}
}

// DeepCopy returns a copy of l.
func (l *VirtualNetworkList) DeepCopy() *VirtualNetworkList {
	if l == nil {
		return nil
	}
	out := new(VirtualNetworkList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *VirtualNetworkList) DeepCopyObject() runtime.Object { return l.DeepCopy() }
