package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SchemeGroupVersion is isthmus.dev/v1alpha1.
var SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// GroupVersionResource of VirtualNetworks.
var GroupVersionResource = SchemeGroupVersion.WithResource(Resource)

// AddToScheme registers the API's types in a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &VirtualNetwork{}, &VirtualNetworkList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
