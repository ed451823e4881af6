package daemon

import (
	"slices"
	"sync"
)

// keyLocks serializes work on one attachment: an ADD and a DEL of the same
// pod (a runtime that gave up on an ADD and deletes while it still runs)
// must not interleave, or the tree could keep an attachment whose address
// was released.
type keyLocks struct {
	mu   sync.Mutex // guards held
	held map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int // goroutines holding or waiting for mu; guarded by keyLocks.mu
}

// lock takes the locks of keys, in sorted order so that two callers with
// overlapping keys cannot deadlock, and returns the function that releases
// them.
func (k *keyLocks) lock(keys ...string) (unlock func()) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	locks := make([]*keyLock, len(keys))
	k.mu.Lock()
	if k.held == nil {
		k.held = make(map[string]*keyLock)
	}
	for i, key := range keys {
		l := k.held[key]
		if l == nil {
			l = &keyLock{}
			k.held[key] = l
		}
		l.refs++
		locks[i] = l
	}
	k.mu.Unlock()
	for _, l := range locks {
		l.mu.Lock()
	}
	return func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		for i, l := range locks {
			l.mu.Unlock()
			if l.refs--; l.refs == 0 {
				delete(k.held, keys[i])
			}
		}
	}
}
