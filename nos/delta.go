package nos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// delta is what a commit changes, at the grain of top-level list entries
// (a VRF, an interface, an ACL set, a CNI namespace) and the tunnel
// container. Validation, the telemetry diff and the stored revision all
// work on it, so a commit that touches one VRF out of a thousand costs
// about one VRF.
type delta struct {
	nis, ifs, acls []string // keys of entries added or changed, sorted
	cnis           []string // keys of CNI namespaces added or changed, sorted
	ags, tks       []string // keys of address groups and tag keys added or changed, sorted
	tunnel         bool     // the tunnel container changed
	removed        bool     // some entry of old is not in cand
}

func computeDelta(old, cand *gen.Device) delta {
	return delta{
		nis:    changedKeys(NetworkInstances(old), NetworkInstances(cand)),
		ifs:    changedKeys(Interfaces(old), Interfaces(cand)),
		acls:   changedKeys(aclSets(old), aclSets(cand)),
		cnis:   changedKeys(cniNamespaces(old), cniNamespaces(cand)),
		ags:    changedKeys(addressGroups(old), addressGroups(cand)),
		tks:    changedKeys(tagKeys(old), tagKeys(cand)),
		tunnel: !reflect.DeepEqual(old.GetTunnel(), cand.GetTunnel()),
		removed: anyRemoved(NetworkInstances(old), NetworkInstances(cand)) || anyRemoved(Interfaces(old), Interfaces(cand)) ||
			anyRemoved(aclSets(old), aclSets(cand)) || anyRemoved(cniNamespaces(old), cniNamespaces(cand)) ||
			anyRemoved(addressGroups(old), addressGroups(cand)) || anyRemoved(tagKeys(old), tagKeys(cand)),
	}
}

// anyRemoved reports whether a key of old is missing from cand.
func anyRemoved[E any](old, cand map[string]E) bool {
	for k := range old {
		if _, ok := cand[k]; !ok {
			return true
		}
	}
	return false
}

// empty reports whether nothing changed.
func (d delta) empty() bool {
	return len(d.nis) == 0 && len(d.ifs) == 0 && len(d.acls) == 0 && len(d.cnis) == 0 && len(d.ags) == 0 && len(d.tks) == 0 && !d.tunnel && !d.removed
}

// changedKeys returns the keys of cand whose entries are new or differ.
func changedKeys[E any](old, cand map[string]E) []string {
	var out []string
	for k, n := range cand {
		if o, ok := old[k]; !ok || !reflect.DeepEqual(o, n) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// partial returns a device holding only the changed entries of cand (shared,
// not copied), for schema validation of what the commit touches.
func (d delta) partial(cand *gen.Device) *gen.Device {
	p := &gen.Device{}
	for _, k := range d.nis {
		p.GetOrCreateNetworkInstances().NetworkInstance = setEntry(p.GetOrCreateNetworkInstances().NetworkInstance, k, NetworkInstances(cand)[k])
	}
	for _, k := range d.ifs {
		p.GetOrCreateInterfaces().Interface = setEntry(p.GetOrCreateInterfaces().Interface, k, Interfaces(cand)[k])
	}
	for _, k := range d.acls {
		sets := p.GetOrCreateAcl().GetOrCreateAclSets()
		sets.AclSet = setEntry(sets.AclSet, k, aclSets(cand)[k])
	}
	for _, k := range d.cnis {
		nss := p.GetOrCreateCni().GetOrCreateNamespaces()
		nss.Namespace = setEntry(nss.Namespace, k, cniNamespaces(cand)[k])
	}
	for _, k := range d.ags {
		gs := p.GetOrCreateAcl().GetOrCreateAddressGroups()
		gs.AddressGroup = setEntry(gs.AddressGroup, k, addressGroups(cand)[k])
	}
	for _, k := range d.tks {
		ks := p.GetOrCreateAcl().GetOrCreateTagKeys()
		ks.TagKey = setEntry(ks.TagKey, k, tagKeys(cand)[k])
	}
	if d.tunnel {
		p.Tunnel = cand.Tunnel
	}
	return p
}

func setEntry[E any](m map[string]E, k string, v E) map[string]E {
	if m == nil {
		m = map[string]E{}
	}
	m[k] = v
	return m
}

// configJSON keeps the RFC 7951 encoding of every top-level entry of the
// running configuration, so that storing a revision re-encodes only what
// the commit changed. It is immutable: update returns a new one.
type configJSON struct {
	entries map[string][]byte // "ni/red", "if/pod1", "acl/web" → compact JSON
	tunnel  []byte
}

func encodeEntry(s ygot.GoStruct) ([]byte, error) {
	js, err := ygot.EmitJSON(s, &ygot.EmitJSONConfig{Format: ygot.RFC7951, SkipValidation: true})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(js)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// newConfigJSON encodes every entry of d.
func newConfigJSON(d *gen.Device) (*configJSON, error) {
	all := delta{
		nis:    sortedKeys(NetworkInstances(d)),
		ifs:    sortedKeys(Interfaces(d)),
		acls:   sortedKeys(aclSets(d)),
		cnis:   sortedKeys(cniNamespaces(d)),
		ags:    sortedKeys(addressGroups(d)),
		tks:    sortedKeys(tagKeys(d)),
		tunnel: true,
	}
	return (&configJSON{entries: map[string][]byte{}}).update(d, all)
}

// update returns the encoding of cand, given that only the entries in ch
// changed since the configuration j encodes.
func (j *configJSON) update(cand *gen.Device, ch delta) (*configJSON, error) {
	next := &configJSON{entries: make(map[string][]byte, len(j.entries)), tunnel: j.tunnel}
	present := func(key string) bool {
		kind, name, _ := strings.Cut(key, "/")
		switch kind {
		case "ni":
			return NetworkInstances(cand)[name] != nil
		case "if":
			return Interfaces(cand)[name] != nil
		case "acl":
			return aclSets(cand)[name] != nil
		case "cni":
			return cniNamespaces(cand)[name] != nil
		case "ag":
			return addressGroups(cand)[name] != nil
		case "tk":
			return tagKeys(cand)[name] != nil
		}
		return false
	}
	for k, v := range j.entries {
		if present(k) {
			next.entries[k] = v
		}
	}
	enc := func(kind, name string, s ygot.GoStruct) error {
		b, err := encodeEntry(s)
		if err != nil {
			return fmt.Errorf("encode %s %q: %w", kind, name, err)
		}
		next.entries[kind+"/"+name] = b
		return nil
	}
	for _, k := range ch.nis {
		if err := enc("ni", k, NetworkInstances(cand)[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range ch.ifs {
		if err := enc("if", k, Interfaces(cand)[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range ch.acls {
		if err := enc("acl", k, aclSets(cand)[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range ch.cnis {
		if err := enc("cni", k, cniNamespaces(cand)[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range ch.ags {
		if err := enc("ag", k, addressGroups(cand)[k]); err != nil {
			return nil, err
		}
	}
	for _, k := range ch.tks {
		if err := enc("tk", k, tagKeys(cand)[k]); err != nil {
			return nil, err
		}
	}
	if ch.tunnel {
		next.tunnel = nil
		if cand.Tunnel != nil {
			b, err := encodeEntry(cand.Tunnel)
			if err != nil {
				return nil, fmt.Errorf("encode tunnel: %w", err)
			}
			next.tunnel = b
		}
	}
	return next, nil
}

// document assembles the whole configuration as one RFC 7951 document, the
// same that ygot.EmitJSON would produce for the device (compact).
func (j *configJSON) document() []byte {
	lists := map[string][][]byte{}
	keys := make([]string, 0, len(j.entries))
	for k := range j.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kind, _, _ := strings.Cut(k, "/")
		lists[kind] = append(lists[kind], j.entries[k])
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	member := func(name string, body func()) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:", name)
		body()
	}
	list := func(entries [][]byte) {
		b.WriteByte('[')
		b.Write(bytes.Join(entries, []byte{','}))
		b.WriteByte(']')
	}
	if sets, groups, keys := lists["acl"], lists["ag"], lists["tk"]; len(sets)+len(groups)+len(keys) > 0 {
		// Children in name order, as ygot emits them.
		member("isthmus-acl:acl", func() {
			b.WriteByte('{')
			sep := ""
			for _, c := range []struct {
				container, list string
				entries         [][]byte
			}{{"acl-sets", "acl-set", sets}, {"address-groups", "address-group", groups}, {"tag-keys", "tag-key", keys}} {
				if len(c.entries) == 0 {
					continue
				}
				fmt.Fprintf(&b, `%s%q:{%q:`, sep, c.container, c.list)
				list(c.entries)
				b.WriteByte('}')
				sep = ","
			}
			b.WriteByte('}')
		})
	}
	if e := lists["cni"]; len(e) > 0 {
		member("isthmus-cni:cni", func() { b.WriteString(`{"namespaces":{"namespace":`); list(e); b.WriteString("}}") })
	}
	if e := lists["if"]; len(e) > 0 {
		member("isthmus-interfaces:interfaces", func() { b.WriteString(`{"interface":`); list(e); b.WriteString("}") })
	}
	if e := lists["ni"]; len(e) > 0 {
		member("isthmus-network-instance:network-instances", func() { b.WriteString(`{"network-instance":`); list(e); b.WriteString("}") })
	}
	if len(j.tunnel) > 0 {
		member("isthmus-tunnel:tunnel", func() { b.Write(j.tunnel) })
	}
	b.WriteByte('}')
	return b.Bytes()
}
