package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// watcher holds the informers. Every event pokes changed; the leader
// renders from the listers, so events coalesce.
type watcher struct {
	nodes      corelisters.NodeLister
	namespaces corelisters.NamespaceLister
	pods       cache.Indexer
	networks   cache.GenericLister
	policies   networkinglisters.NetworkPolicyLister
	services   corelisters.ServiceLister
	slices     discoverylisters.EndpointSliceLister
	changed    chan struct{} // buffered 1
}

func metaName(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

// podsByNamespace indexes pods that hold a pod-network address.
const podsByNamespace = "isthmus-namespace"

// startWatch starts informers on Nodes, Namespaces, Pods, Services,
// EndpointSlices, NetworkPolicies and VirtualNetworks and waits for their
// first list.
func (c *Controller) startWatch(ctx context.Context) (*watcher, error) {
	f := informers.NewSharedInformerFactory(c.kc, 0)
	df := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 0)
	w := &watcher{changed: make(chan struct{}, 1)}
	poke := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	}
	nodes := f.Core().V1().Nodes()
	namespaces := f.Core().V1().Namespaces()
	pods := f.Core().V1().Pods().Informer()
	if err := pods.AddIndexers(cache.Indexers{podsByNamespace: podNamespaceIndex}); err != nil {
		return nil, fmt.Errorf("index pods: %w", err)
	}
	vns := df.ForResource(vnGVR)
	policies := f.Networking().V1().NetworkPolicies()
	w.nodes, w.namespaces, w.pods, w.networks = nodes.Lister(), namespaces.Lister(), pods.GetIndexer(), vns.Lister()
	w.policies = policies.Lister()
	services, eps := f.Core().V1().Services(), f.Discovery().V1().EndpointSlices()
	w.services, w.slices = services.Lister(), eps.Lister()
	for _, inf := range []cache.SharedIndexInformer{
		nodes.Informer(), namespaces.Informer(), pods, vns.Informer(), policies.Informer(),
		services.Informer(), eps.Informer(),
	} {
		if _, err := inf.AddEventHandler(poke); err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
	}
	f.Start(ctx.Done())
	df.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for typ, ok := range f.WaitForCacheSync(sctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("sync %v informer: %w", typ, context.Cause(sctx))
		}
	}
	for gvr, ok := range df.WaitForCacheSync(sctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("sync %s informer (is the VirtualNetwork CRD installed?): %w", gvr.Resource, context.Cause(sctx))
		}
	}
	w.poke()
	return w, nil
}

func (w *watcher) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// podNamespaceIndex indexes the pods that use the pod network: not host
// network, not finished.
func podNamespaceIndex(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil, nil
	}
	return []string{p.Namespace}, nil
}
