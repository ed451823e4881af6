package nos

import (
	"reflect"

	"github.com/isthmus-net/isthmus/gen"
)

// revertChanges undoes in cur the changes that turned before into after,
// and nothing else: a leaf the commit changed gets its value from before
// again, a list entry the commit added goes, one it removed comes back,
// one it changed is reverted leaf by leaf. Leaves and entries the commit
// did not touch keep what cur has, so commits made after it survive its
// rollback. cur must not share memory with before (values are moved from
// before into cur).
func revertChanges(cur, before, after *gen.Device) {
	revertStruct(reflect.ValueOf(cur).Elem(), reflect.ValueOf(before).Elem(), reflect.ValueOf(after).Elem())
}

// revertStruct reverts the fields of one generated struct (a container or
// a list entry); cur is addressable.
func revertStruct(cur, before, after reflect.Value) {
	for i := range cur.NumField() {
		c, b, a := cur.Field(i), before.Field(i), after.Field(i)
		if !c.CanSet() || reflect.DeepEqual(b.Interface(), a.Interface()) {
			continue
		}
		switch {
		case c.Kind() == reflect.Pointer && c.Type().Elem().Kind() == reflect.Struct:
			revertContainer(c, b, a)
		case c.Kind() == reflect.Map:
			revertList(c, b, a)
		default:
			// A leaf or leaf-list: the value from before (nil if unset).
			c.Set(b)
		}
	}
}

// revertContainer reverts a child container; an absent one counts as empty,
// and one left empty is removed.
func revertContainer(c, b, a reflect.Value) {
	zero := reflect.New(c.Type().Elem())
	if b.IsNil() {
		b = zero
	}
	if a.IsNil() {
		a = zero
	}
	if c.IsNil() {
		c.Set(reflect.New(c.Type().Elem()))
	}
	revertStruct(c.Elem(), b.Elem(), a.Elem())
	if c.Elem().IsZero() {
		c.Set(reflect.Zero(c.Type()))
	}
}

// revertList reverts a keyed list (a map of entry pointers).
func revertList(c, b, a reflect.Value) {
	keys := map[any]reflect.Value{}
	for _, m := range []reflect.Value{b, a} {
		iter := m.MapRange()
		for iter.Next() {
			keys[iter.Key().Interface()] = iter.Key()
		}
	}
	for _, k := range keys {
		be, ae := b.MapIndex(k), a.MapIndex(k)
		switch {
		case be.IsValid() && ae.IsValid() && reflect.DeepEqual(be.Interface(), ae.Interface()):
		case !be.IsValid():
			// Added by the commit.
			if !c.IsNil() {
				c.SetMapIndex(k, reflect.Value{})
			}
		case !ae.IsValid():
			// Removed by the commit.
			if c.IsNil() {
				c.Set(reflect.MakeMap(c.Type()))
			}
			c.SetMapIndex(k, be)
		default:
			// Changed by the commit: revert it where it still is.
			if ce := c.MapIndex(k); ce.IsValid() && !ce.IsNil() {
				revertStruct(ce.Elem(), be.Elem(), ae.Elem())
			}
		}
	}
	if !c.IsNil() && c.Len() == 0 {
		c.Set(reflect.Zero(c.Type()))
	}
}
