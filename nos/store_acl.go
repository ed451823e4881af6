package nos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The store keeps an ACL set as one key for the set's own leaves
// ("acl/web" → the set without its entries) and one key per entry
// ("acle/web/0000000010" → the entry), so a commit that changes one
// entry of a set of ten thousand writes, and its revision records, one
// entry. Stores written before hold a set whole under its key, in
// bucketConfig (format "entries") and in the revisions of that time:
// migrate splits the running sets once, and rebuild splits a whole set
// it meets in an old revision.

const aclEntryKind = "acle"

// aclEntryKey returns the store key of entry seq of ACL set name. The
// sequence id is zero-padded, so the keys of a set sort by it.
func aclEntryKey(name string, seq uint32) string {
	return fmt.Sprintf("%s/%s/%010d", aclEntryKind, name, seq)
}

// aclEntryPrefix is what the keys of the entries of set name start with.
func aclEntryPrefix(name string) string { return aclEntryKind + "/" + name + "/" }

// parseACLEntryKey returns the set and sequence id of an entry key.
func parseACLEntryKey(k string) (set string, seq uint32, ok bool) {
	rest, ok := strings.CutPrefix(k, aclEntryKind+"/")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 || len(rest)-i-1 != 10 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(rest[i+1:], 10, 32)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], uint32(n), true
}

// isEntryOf reports whether k is the key of an entry of set name (a set
// named "a/0000000001" has keys under "acle/a/" too; they do not parse
// as entries of "a").
func isEntryOf(k, name string) bool {
	set, _, ok := parseACLEntryKey(k)
	return ok && set == name
}

// splitACLSet splits the RFC 7951 JSON of a whole ACL set into its store
// keys: the set without its entries, and each entry.
func splitACLSet(name string, whole []byte) (map[string][]byte, error) {
	var set map[string]json.RawMessage
	if err := json.Unmarshal(whole, &set); err != nil {
		return nil, fmt.Errorf("read ACL set %q: %w", name, err)
	}
	out := map[string][]byte{}
	if raw, ok := set["acl-entries"]; ok {
		var es struct {
			Entry []json.RawMessage `json:"acl-entry"`
		}
		if err := json.Unmarshal(raw, &es); err != nil {
			return nil, fmt.Errorf("read entries of ACL set %q: %w", name, err)
		}
		for _, e := range es.Entry {
			var key struct {
				Seq *uint32 `json:"sequence-id"`
			}
			if err := json.Unmarshal(e, &key); err != nil || key.Seq == nil {
				return nil, fmt.Errorf("read an entry of ACL set %q: no sequence-id", name)
			}
			var b bytes.Buffer
			if err := json.Compact(&b, e); err != nil {
				return nil, fmt.Errorf("read entry %d of ACL set %q: %w", *key.Seq, name, err)
			}
			out[aclEntryKey(name, *key.Seq)] = b.Bytes()
		}
		delete(set, "acl-entries")
	}
	own, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("write ACL set %q: %w", name, err)
	}
	out[topLists[listACL].kind+"/"+name] = own
	return out, nil
}

// holdsEntries reports whether v, a stored ACL set, holds its entries
// (stored before each entry had its own key).
func holdsEntries(v []byte) bool {
	if !bytes.Contains(v, []byte(`"acl-entries"`)) {
		return false
	}
	var set map[string]json.RawMessage
	if json.Unmarshal(v, &set) != nil {
		return false
	}
	_, ok := set["acl-entries"]
	return ok
}

// undoChange puts entry ch.Key of entries (store key → JSON) back to its
// value before the revision: an ACL set stored whole, or added by the
// revision (every entry of it too), takes its entries with it.
func undoChange(entries map[string][]byte, ch entryChange) error {
	name, isSet := strings.CutPrefix(ch.Key, topLists[listACL].kind+"/")
	if isSet && (ch.Old == nil || holdsEntries(ch.Old)) {
		for k := range entries {
			if isEntryOf(k, name) {
				delete(entries, k)
			}
		}
		if ch.Old == nil {
			delete(entries, ch.Key)
			return nil
		}
		split, err := splitACLSet(name, ch.Old)
		if err != nil {
			return err
		}
		for k, v := range split {
			entries[k] = v
		}
		return nil
	}
	if ch.Old == nil {
		delete(entries, ch.Key)
	} else {
		entries[ch.Key] = ch.Old
	}
	return nil
}

// withStaleEntries adds to changes the removal of every stored entry of
// an ACL set that changes writes whole (or removes) and does not name,
// so that no entry of an earlier version of the set stays behind.
func withStaleEntries(cfg *bolt.Bucket, changes []entryChange) []entryChange {
	var named map[string]bool
	n := len(changes)
	for i := 0; i < n; i++ {
		if !changes[i].wholeSet {
			continue
		}
		if named == nil {
			named = make(map[string]bool, n)
			for _, ch := range changes[:n] {
				named[ch.Key] = true
			}
		}
		name := strings.TrimPrefix(changes[i].Key, topLists[listACL].kind+"/")
		prefix := []byte(aclEntryPrefix(name))
		c := cfg.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if key := string(k); isEntryOf(key, name) && !named[key] {
				changes = append(changes, entryChange{Key: key})
			}
		}
	}
	return changes
}

// attachACLEntries puts the stored entries of each ACL set (the acle
// keys of entries, removed from it) into the JSON of its set.
func attachACLEntries(entries map[string][]byte) (map[string][]byte, error) {
	perSet := map[string][]json.RawMessage{}
	out := make(map[string][]byte, len(entries))
	for k, v := range entries {
		if set, _, ok := parseACLEntryKey(k); ok {
			perSet[set] = append(perSet[set], json.RawMessage(v))
			continue
		}
		out[k] = v
	}
	for name, es := range perSet {
		key := topLists[listACL].kind + "/" + name
		own, ok := out[key]
		if !ok {
			return nil, fmt.Errorf("entries of ACL set %q stored without the set", name)
		}
		var set map[string]json.RawMessage
		if err := json.Unmarshal(own, &set); err != nil {
			return nil, fmt.Errorf("read ACL set %q: %w", name, err)
		}
		list, err := json.Marshal(map[string][]json.RawMessage{"acl-entry": es})
		if err != nil {
			return nil, err
		}
		set["acl-entries"] = list
		whole, err := json.Marshal(set)
		if err != nil {
			return nil, fmt.Errorf("write ACL set %q: %w", name, err)
		}
		out[key] = whole
	}
	return out, nil
}

// splitStoredSets is the migration from the "entries" format: every ACL
// set stored whole in cfg is split into its own key and one per entry.
func splitStoredSets(cfg *bolt.Bucket) error {
	whole := map[string][]byte{}
	prefix := []byte(topLists[listACL].kind + "/")
	c := cfg.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if holdsEntries(v) {
			whole[string(k[len(prefix):])] = bytes.Clone(v)
		}
	}
	for name, v := range whole {
		split, err := splitACLSet(name, v)
		if err != nil {
			return err
		}
		for k, v := range split {
			if err := cfg.Put([]byte(k), v); err != nil {
				return fmt.Errorf("write %s: %w", k, err)
			}
		}
	}
	return nil
}
