package dataplane

import (
	"net/netip"
	"slices"
)

// Service is a virtual address of a VRF, load-balanced by the forwarder
// over its backends.
type Service struct {
	ServiceKey
	// Affinity hashes only the client's address, so every flow of a client
	// goes to one backend while the backends do not change.
	Affinity bool
	// ExternalAll lets traffic from the tunnel whose sender does not serve
	// the service itself pick any backend: one of another host is reached
	// by carrying the packet on, untranslated, to that host (which
	// translates it to a backend of its own and answers the client).
	// Without it, tunnel traffic takes local backends only.
	ExternalAll bool
	// Backends are the pods behind the service.
	Backends []Backend
}

// ServiceKey identifies a service: protocol, address and port in a VRF.
type ServiceKey struct {
	VRF   string
	Addr  netip.Addr
	Proto Protocol
	Port  uint16
}

// Protocol is an IP protocol number a service balances.
type Protocol uint8

// Protocols of services.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// BackendKey identifies a backend of a service: pod address and port.
type BackendKey struct {
	Addr netip.Addr
	Port uint16
}

// Backend is one pod behind a service.
type Backend struct {
	BackendKey
	// Weight is the backend's share of new flows relative to the others;
	// 0 counts as 1.
	Weight uint8
	// Ready backends take new flows. Serving backends that are
	// Terminating take new flows only while no backend is ready; every
	// configured backend keeps its existing flows.
	Ready, Serving, Terminating bool
	// Local is a pod attached to this host: traffic arriving over the
	// tunnel is balanced over local backends only.
	Local bool
}

// eligible returns the backends that take new flows: the ready ones, or,
// when none is ready, the serving ones that are terminating (so that a
// service whose pods are all being replaced keeps answering). The result
// is sorted by key, so the tables depend only on the set.
func eligible(bes []Backend) []Backend {
	var ready, fallback []Backend
	for _, b := range bes {
		switch {
		case b.Ready:
			ready = append(ready, b)
		case b.Serving && b.Terminating:
			fallback = append(fallback, b)
		}
	}
	out := ready
	if len(out) == 0 {
		out = fallback
	}
	slices.SortFunc(out, func(a, b Backend) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return out
}
