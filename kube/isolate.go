package kube

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// isolate keeps one VirtualNetwork per namespace in namespace-isolation
// mode: it makes the network of every namespace that names none, from the
// default network's subnets, block size and encapsulation, with the lowest
// free RD number and route target BGPAS:number; and it deletes the network
// of a namespace that is gone (or now names a network) once none of the
// namespace's pods is left. It reports whether it changed anything.
func (l *leader) isolate(ctx context.Context, s snapshot) (bool, error) {
	byName := map[string]*v1alpha1.VirtualNetwork{}
	used := map[int32]bool{}
	for _, vn := range s.networks {
		byName[vn.Name] = vn
		used[vn.Spec.RouteDistinguisher.Number] = true
	}
	template := byName[l.cfg.DefaultNetwork]
	wanted := map[string]bool{}
	changed := false
	var errs []error
	for _, ns := range s.namespaces {
		name := networkOf(l.cfg, ns)
		if ns.labelled || name == "" || ns.terminating {
			continue
		}
		wanted[name] = true
		if byName[name] != nil {
			delete(l.creating, name)
			continue
		}
		if l.creating[name] {
			continue
		}
		if template == nil {
			errs = append(errs, fmt.Errorf("make network of namespace %s: default network %q (the template) does not exist", ns.name, l.cfg.DefaultNetwork))
			continue
		}
		number := int32(0)
		for n := int32(1); n <= 65535; n++ {
			if !used[n] {
				number = n
				break
			}
		}
		if number == 0 {
			errs = append(errs, fmt.Errorf("make network of namespace %s: every RD number is taken", ns.name))
			continue
		}
		used[number] = true
		rt := fmt.Sprintf("%d:%d", l.cfg.BGPAS, number)
		vn := &v1alpha1.VirtualNetwork{
			TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: v1alpha1.Kind},
			ObjectMeta: metav1.ObjectMeta{
				Name:       name,
				Labels:     map[string]string{v1alpha1.IsolatedNamespaceLabel: ns.name},
				Finalizers: []string{Finalizer},
			},
			Spec: v1alpha1.VirtualNetworkSpec{
				RouteDistinguisher: v1alpha1.RouteDistinguisher{Number: number},
				ImportRouteTargets: []string{rt},
				ExportRouteTargets: []string{rt},
				Subnets:            template.Spec.Subnets,
				BlockSize:          template.Spec.BlockSize,
				Encapsulation:      template.Spec.Encapsulation,
			},
		}
		if err := l.create(ctx, vn); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, err)
			continue
		}
		l.creating[name] = true
		l.c.log.Info("made the network of a namespace", "namespace", ns.name, "network", name, "rd_number", number)
		changed = true
	}
	for _, vn := range s.networks {
		owner, ok := vn.Labels[v1alpha1.IsolatedNamespaceLabel]
		if !ok || wanted[vn.Name] || vn.DeletionTimestamp != nil || s.pods[owner] > 0 {
			continue
		}
		err := l.c.dyn.Resource(vnGVR).Delete(ctx, vn.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &vn.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete network %s of namespace %s: %w", vn.Name, owner, err))
			continue
		}
		l.c.log.Info("deleted the network of a namespace", "namespace", owner, "network", vn.Name)
		changed = true
	}
	return changed, errors.Join(errs...)
}

func (l *leader) create(ctx context.Context, vn *v1alpha1.VirtualNetwork) error {
	u, err := toUnstructured(vn)
	if err != nil {
		return err
	}
	if _, err := l.c.dyn.Resource(vnGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create virtual network %s: %w", vn.Name, err)
	}
	return nil
}
