package nos

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"

	"github.com/isthmus-net/isthmus/gen"
)

// A commit whose edit names the entries it changes (CommitEntries) costs
// what those entries cost, like a Set: the edit works on a partial
// configuration holding copies of only the named entries, and the
// candidate shares every other entry with the running configuration.

// InterfaceEntry returns the path of interface name, for CommitEntries.
func InterfaceEntry(name string) *gpb.Path {
	return entryPath(topLists[listIf], name)
}

// NetworkInstanceEntry returns the path of network instance name, for
// CommitEntries.
func NetworkInstanceEntry(name string) *gpb.Path {
	return entryPath(topLists[listNI], name)
}

// TunnelEntry returns the path of the tunnel container, for CommitEntries.
func TunnelEntry() *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{{Name: "tunnel"}}}
}

func entryPath(l topList, name string) *gpb.Path {
	p := &gpb.Path{}
	for i, seg := range l.path {
		e := &gpb.PathElem{Name: seg}
		if i == len(l.path)-1 {
			e.Key = map[string]string{"name": name}
		}
		p.Elem = append(p.Elem, e)
	}
	return p
}

// entryRef is one entry a CommitEntries names: an entry of a top-level
// list, or the tunnel container (list < 0).
type entryRef struct {
	list int
	name string
}

// parseEntries turns the paths given to CommitEntries into entry
// references, each once. Every path must name one entry of a top-level
// list by its key, or the tunnel container.
func (c *Core) parseEntries(paths []*gpb.Path) ([]entryRef, error) {
	seen := make(map[entryRef]bool, len(paths))
	var refs []entryRef
	for _, p := range paths {
		ref, err := c.parseEntry(p)
		if err != nil {
			return nil, err
		}
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

func (c *Core) parseEntry(p *gpb.Path) (entryRef, error) {
	if _, err := c.checkWritable(p); err != nil {
		return entryRef{}, err
	}
	elems := p.GetElem()
	if len(elems) == 1 && elems[0].GetName() == "tunnel" && len(elems[0].GetKey()) == 0 {
		return entryRef{list: -1}, nil
	}
	for i, l := range topLists {
		if len(elems) != len(l.path) || !onPath(elems, l.path) {
			continue
		}
		keys := elems[len(elems)-1].GetKey()
		if name, ok := keys["name"]; ok && len(keys) == 1 {
			return entryRef{list: i, name: name}, nil
		}
	}
	return entryRef{}, invalidf(pathString(p), "a commit names whole entries of top-level lists by key, or /tunnel")
}

// CommitEntries runs one transaction that changes only the entries named
// by paths (InterfaceEntry, NetworkInstanceEntry, TunnelEntry, or the
// path of an entry of another top-level list). edit gets a configuration
// holding copies of those of them that exist, and nothing else; what it
// leaves there becomes the entries (an entry it removes is deleted, one
// it creates is added). Everything else is shared with the running
// configuration, neither copied nor compared, so the commit costs about
// the same with ten VRFs or ten thousand. An edit that leaves anything
// outside the named entries is refused with ErrInvalid. Validation,
// reconcilers, persistence and history are those of Commit.
func (c *Core) CommitEntries(ctx context.Context, who string, paths []*gpb.Path, edit func(part *gen.Device) error) (uint64, error) {
	refs, err := c.parseEntries(paths)
	if err != nil {
		return 0, err
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if !c.isStarted() {
		return 0, fmt.Errorf("commit: %w", ErrNotStarted)
	}
	c.mu.RLock()
	old := c.running
	c.mu.RUnlock()
	part := &gen.Device{}
	for _, r := range refs {
		copyEntry(part, old, r)
	}
	if err := edit(part); err != nil {
		return 0, err
	}
	cand := &gen.Device{}
	*cand = *old
	// The list maps come from the core's spares, as in Set (cow_reuse.go).
	t := touched{maps: listMaps{reuse: &c.reuse}}
	defer func() {
		c.mu.RLock()
		running := c.running
		c.mu.RUnlock()
		c.reuse.settle(old, cand, running, &t)
	}()
	for _, r := range refs {
		if r.list < 0 {
			cand.Tunnel, part.Tunnel = part.Tunnel, nil
			t.tunnel = true
			continue
		}
		l := topLists[r.list]
		e := l.entry(part, r.name)
		if m := l.entries(part); m.IsValid() && m.Len() > 0 {
			m.SetMapIndex(reflect.ValueOf(r.name), reflect.Value{})
		}
		if e != nil || l.entry(old, r.name) != nil {
			putEntry(cand, r.list, r.name, e, &t)
		}
		if t.keys[r.list] == nil {
			t.keys[r.list] = map[string]bool{}
		}
		t.keys[r.list][r.name] = true
	}
	if where := firstSet(reflect.ValueOf(part), ""); where != "" {
		return 0, invalidf(where, "the commit changes configuration outside the entries it names")
	}
	return c.commitLocked(ctx, who, old, cand, touchedDelta(old, cand, &t))
}

// copyEntry puts a deep copy of the entry r of src into part, creating
// the containers on its way; an entry src does not have is left out.
func copyEntry(part, src *gen.Device, r entryRef) {
	if r.list < 0 {
		if src.Tunnel != nil {
			part.Tunnel = mustCopyStruct(src.Tunnel).(*gen.IsthmusTunnel_Tunnel)
		}
		return
	}
	l := topLists[r.list]
	e := l.entry(src, r.name)
	if e == nil {
		return
	}
	m := makeListMap(part, l)
	m.SetMapIndex(reflect.ValueOf(r.name), reflect.ValueOf(mustCopyStruct(e)))
}

// makeListMap returns the map of list l in d, creating the containers on
// its way and the map when they are missing; d is d's own, not shared.
func makeListMap(d *gen.Device, l topList) reflect.Value {
	v := reflect.ValueOf(d)
	for _, seg := range l.path {
		f := fieldByPath(v, seg)
		if f.Kind() == reflect.Map {
			if f.IsNil() {
				f.Set(reflect.MakeMap(f.Type()))
			}
			return f
		}
		if f.IsNil() {
			f.Set(reflect.New(f.Type().Elem()))
		}
		v = f
	}
	panic("nos: list " + l.kind + " ends in no map")
}

// putEntry sets entry name of list topLists[list] in cand to e (nil:
// removes it). cand shares its containers with the running
// configuration: those on the way to the list are copied (shallow), and
// the list's map is cand's own (t.ownMap: a spare brought up to date, or
// a copy of its pointers), never another entry.
func putEntry(cand *gen.Device, list int, name string, e ygot.GoStruct, t *touched) {
	v := reflect.ValueOf(cand)
	for _, seg := range topLists[list].path {
		f := fieldByPath(v, seg)
		if f.Kind() == reflect.Map {
			var m reflect.Value
			if f.IsNil() {
				m = reflect.MakeMap(f.Type())
			} else {
				m = t.ownMap(list, f)
			}
			if e == nil {
				m.SetMapIndex(reflect.ValueOf(name), reflect.Value{})
			} else {
				m.SetMapIndex(reflect.ValueOf(name), reflect.ValueOf(e))
			}
			f.Set(m)
			return
		}
		cp := reflect.New(f.Type().Elem())
		if !f.IsNil() {
			cp.Elem().Set(f.Elem())
		}
		f.Set(cp)
		v = cp
	}
}

// firstSet returns the schema path of the first thing set in the
// generated struct behind v (a pointer), or "" when nothing is: empty
// containers and empty maps count as nothing.
func firstSet(v reflect.Value, at string) string {
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return ""
	}
	s := v.Elem()
	if s.Kind() != reflect.Struct {
		return at // a leaf
	}
	for i := 0; i < s.NumField(); i++ {
		f := s.Field(i)
		where := at + "/" + s.Type().Field(i).Tag.Get("path")
		switch {
		case f.Kind() == reflect.Map:
			if f.Len() > 0 {
				keys := make([]string, 0, f.Len())
				iter := f.MapRange()
				for iter.Next() {
					keys = append(keys, fmt.Sprint(iter.Key().Interface()))
				}
				sort.Strings(keys)
				return fmt.Sprintf("%s[%s]", where, keys[0])
			}
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
			if w := firstSet(f, where); w != "" {
				return w
			}
		case !f.IsZero():
			return where
		}
	}
	return ""
}

// mustCopyStruct deep-copies one generated struct.
func mustCopyStruct(s ygot.GoStruct) ygot.GoStruct {
	cp, err := ygot.DeepCopy(s)
	if err != nil {
		// DeepCopy fails only on a malformed generated struct.
		panic("copy configuration entry: " + err.Error())
	}
	return cp
}
