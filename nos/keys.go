package nos

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/openconfig/ygot/ygot"
)

// checkKeys walks every list entry of root and compares its key leaves with
// the same leaves in its config container: a mismatch
// (network-instance[name=green] whose config/name is "purple") is an
// error; a config key leaf left out is filled in from the key. ygot checks
// this only as part of resolving every leafref, which costs quadratic time.
func checkKeys(root ygot.GoStruct) error {
	return walkKeys(reflect.ValueOf(root), "")
}

func walkKeys(v reflect.Value, path string) error {
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	s := v.Elem()
	t := s.Type()
	for i := 0; i < t.NumField(); i++ {
		f, ft := s.Field(i), t.Field(i)
		name := ft.Tag.Get("path")
		switch f.Kind() {
		case reflect.Pointer:
			if err := walkKeys(f, path+"/"+name); err != nil {
				return err
			}
		case reflect.Map:
			iter := f.MapRange()
			for iter.Next() {
				entry := iter.Value()
				epath := path + "/" + name + keyString(entry)
				if err := matchConfigKeys(entry, epath); err != nil {
					return err
				}
				if err := walkKeys(entry, epath); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// matchConfigKeys compares the leaf fields of a list entry (its keys) with
// the fields of the same name in its Config container.
func matchConfigKeys(entry reflect.Value, path string) error {
	s := entry.Elem()
	cfgField := s.FieldByName("Config")
	if !cfgField.IsValid() || cfgField.IsNil() {
		return nil
	}
	cfg := cfgField.Elem()
	t := s.Type()
	for i := 0; i < t.NumField(); i++ {
		ft := t.Field(i)
		key := s.Field(i)
		if !isLeaf(key) {
			continue
		}
		cf := cfg.FieldByName(ft.Name)
		if !cf.IsValid() || cf.Type() != key.Type() {
			continue
		}
		if isZero(cf) {
			cf.Set(key)
			continue
		}
		if !reflect.DeepEqual(cf.Interface(), key.Interface()) {
			return invalidf(path+"/config/"+ft.Tag.Get("path"), "%v does not match the list key %v", leafValue(cf), leafValue(key))
		}
	}
	return nil
}

func isLeaf(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer:
		return v.Type().Elem().Kind() != reflect.Struct
	case reflect.Int64:
		return true // generated enumerations
	}
	return false
}

func isZero(v reflect.Value) bool {
	return v.IsZero()
}

func leafValue(v reflect.Value) any {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		return v.Elem().Interface()
	}
	if e, ok := v.Interface().(interface{ String() string }); ok {
		return e.String()
	}
	return v.Interface()
}

// keyString renders an entry's key leaves as gNMI path keys, for messages.
func keyString(entry reflect.Value) string {
	s := entry.Elem()
	t := s.Type()
	var b strings.Builder
	for i := 0; i < t.NumField(); i++ {
		if isLeaf(s.Field(i)) {
			fmt.Fprintf(&b, "[%s=%v]", t.Field(i).Tag.Get("path"), leafValue(s.Field(i)))
		}
	}
	return b.String()
}
