package daemon

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestKeyLocks(t *testing.T) {
	var k keyLocks
	var inside atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys := []string{"a"}
			if i%2 == 0 {
				keys = []string{"b", "a", "b"} // unsorted, repeated
			}
			unlock := k.lock(keys...)
			if n := inside.Add(1); n != 1 {
				t.Errorf("%d holders of key a at once", n)
			}
			inside.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if len(k.held) != 0 {
		t.Fatalf("%d locks left after every holder let go", len(k.held))
	}
	// Different keys do not wait for each other.
	unlockA := k.lock("a")
	done := make(chan struct{})
	go func() { k.lock("b")(); close(done) }()
	<-done
	unlockA()
}
