package testenv

import (
	"runtime"
	"testing"
)

// TestUnavailableFailsInCI: under CI a missing requirement is a failure,
// elsewhere a skip.
func TestUnavailableFailsInCI(t *testing.T) {
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		rec := &recorder{TB: t}
		done := make(chan struct{})
		go func() { // Fatal and Skip end the goroutine they run on
			defer close(done)
			Unavailable(rec, "needs a unicorn")
		}()
		<-done
		if ci == "true" && (!rec.failed || rec.skipped) || ci == "" && (!rec.skipped || rec.failed) {
			t.Errorf("CI=%q: failed %t, skipped %t", ci, rec.failed, rec.skipped)
		}
	}
}

type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()      {}
func (r *recorder) Fatal(...any) { r.failed = true; runtime.Goexit() }
func (r *recorder) Skip(...any)  { r.skipped = true; runtime.Goexit() }
