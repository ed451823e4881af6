// Package testenv is what tests across the project share about the
// machine they run on: privileged tests skip themselves on a developer's
// machine without root, and fail instead under CI, which runs as root and
// must run every test.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Privileged skips t unless it runs as root with iproute2 and the given
// extra binaries (names on PATH or absolute paths). Under CI a missing
// privilege or binary fails the test instead.
func Privileged(t testing.TB, binaries ...string) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, b := range append([]string{"ip"}, binaries...) {
		if missing != "" {
			break
		}
		if _, err := exec.LookPath(b); err != nil {
			missing = b
		}
	}
	if missing == "" {
		return
	}
	Unavailable(t, "privileged test needs "+missing)
}

// Unavailable skips t because what it needs is missing, or fails it under
// CI, which must provide everything.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatal(why + ", which CI must provide")
	}
	t.Skip(why)
}
