package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Endpoint hints: the decapsulating programs find the endpoint that sent a
// packet (by outer source address, or by source MAC for MPLSoMPLS) in a
// direct-mapped array before they try the hash maps endpoint_index and
// endpoint_macs, because the array access is inlined and the hash-map
// helper call is the largest single cost of a decapsulation. The hash maps
// stay the complete record; a hint is only ever a copy of one of their
// entries, so every change to them goes through the four functions below.
// When two endpoints share a hint entry the later one takes it and the
// other is found through the hash map.

// endpointHints must match ENDPOINT_HINTS in bpf/types.h.
const endpointHints = 8192

// endpointHash mirrors endpoint_hash in bpf/forwarder.c: key is an address
// as it sits in the packet (or a MAC's first four bytes), key2 a MAC's last
// two bytes.
func endpointHash(key uint32, key2 uint16) uint32 {
	return mix32(key^uint32(key2)<<16^0x9e3779b9) & (endpointHints - 1)
}

func macKeys(mac [6]byte) (uint32, uint16) {
	return binary.NativeEndian.Uint32(mac[:4]), binary.NativeEndian.Uint16(mac[4:])
}

// indexEndpoint accepts packets from addr as coming from slot.
func (d *Dataplane) indexEndpoint(addr [4]byte, slot uint32) error {
	k := be32(addr)
	if err := d.maps.EndpointIndex.Put(k, slot); err != nil {
		return fmt.Errorf("index endpoint: %w", err)
	}
	h := forwarderEndpointHint{Key: k, Slot: slot}
	if err := d.maps.AddrHints.Put(endpointHash(k, 0), &h); err != nil {
		return fmt.Errorf("hint endpoint: %w", err)
	}
	return nil
}

// unindexEndpoint stops accepting packets from addr.
func (d *Dataplane) unindexEndpoint(addr [4]byte) error {
	k := be32(addr)
	if err := dropHint(d.maps.AddrHints, endpointHash(k, 0), k, 0); err != nil {
		return err
	}
	if err := d.maps.EndpointIndex.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unindex endpoint: %w", err)
	}
	return nil
}

// indexMAC accepts MPLSoMPLS frames from mac as coming from slot.
func (d *Dataplane) indexMAC(mac [6]byte, slot uint32) error {
	if err := d.maps.EndpointMacs.Put(forwarderMacKey{Mac: mac}, slot); err != nil {
		return fmt.Errorf("index endpoint mac: %w", err)
	}
	k, k2 := macKeys(mac)
	h := forwarderEndpointHint{Key: k, Key2: k2, Slot: slot}
	if err := d.maps.MacHints.Put(endpointHash(k, k2), &h); err != nil {
		return fmt.Errorf("hint endpoint mac: %w", err)
	}
	return nil
}

// unindexMAC stops accepting MPLSoMPLS frames from mac.
func (d *Dataplane) unindexMAC(mac [6]byte) error {
	k, k2 := macKeys(mac)
	if err := dropHint(d.maps.MacHints, endpointHash(k, k2), k, k2); err != nil {
		return err
	}
	if err := d.maps.EndpointMacs.Delete(forwarderMacKey{Mac: mac}); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unindex endpoint mac: %w", err)
	}
	return nil
}

// dropHint clears hint entry i if it holds the given key (a colliding
// endpoint may have taken it since).
func dropHint(m *ebpf.Map, i, key uint32, key2 uint16) error {
	var h forwarderEndpointHint
	if err := m.Lookup(i, &h); err != nil {
		return fmt.Errorf("read endpoint hint: %w", err)
	}
	if h.Key != key || h.Key2 != key2 {
		return nil
	}
	if err := m.Put(i, &forwarderEndpointHint{}); err != nil {
		return fmt.Errorf("clear endpoint hint: %w", err)
	}
	return nil
}
