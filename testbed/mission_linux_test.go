package testbed

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildBinaries builds isthmusd and isthmus-cni for the mission tests and
// takes gnmic from its cache (tools/gnmic/build.sh, which builds it there
// the first time); a build that fails fails the test with its output.
// Callers build before they start their scenario's deadline: a cold build
// on a busy machine takes minutes.
func buildBinaries(t *testing.T) Binaries {
	t.Helper()
	dir := t.TempDir()
	b := Binaries{Isthmusd: filepath.Join(dir, "isthmusd"), CNI: filepath.Join(dir, "isthmus-cni")}
	for _, c := range []struct{ out, pkg string }{
		{b.Isthmusd, "github.com/isthmus-net/isthmus/cmd/isthmusd"},
		{b.CNI, "github.com/isthmus-net/isthmus/cmd/isthmus-cni"},
	} {
		if out, err := exec.Command("go", "build", "-o", c.out, c.pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v: %s", c.pkg, err, out)
		}
	}
	gnmic, err := CachedGnmic("..")
	if err != nil {
		t.Fatal(err)
	}
	b.Gnmic = gnmic
	return b
}

// missionUp builds the mission topology with FRR on dcgw and configured
// isthmusd on every host, running bins (buildBinaries).
func missionUp(t *testing.T, ctx context.Context, bins Binaries) (*Testbed, *FRR, map[string]*Isthmusd) {
	t.Helper()
	tb := NewTestbed(t, Mission())
	if err := tb.SetBinaries(bins); err != nil {
		t.Fatal(err)
	}
	dcgw, err := tb.StartFRR(ctx, "dcgw")
	if err != nil {
		t.Fatal(err)
	}
	daemons := map[string]*Isthmusd{}
	for _, h := range tb.Topology().NodesWithRole(RoleHost) {
		d, err := tb.StartIsthmusd(ctx, h, IsthmusdOptions{})
		if err != nil {
			t.Fatal(err)
		}
		daemons[h] = d
		if err := tb.ConfigureHost(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := dcgw.WaitEstablished(ctx, "10.10.0.11", "10.10.0.12", "10.20.0.11", "10.20.0.12"); err != nil {
		t.Fatal(err)
	}
	return tb, dcgw, daemons
}

// TestMissionScenarios runs every mission scenario against one topology,
// as `make demo` does. A scenario that fails fails its subtest; the
// others still run.
func TestMissionScenarios(t *testing.T) {
	RequirePrivileges(t, "nsenter", frrBGPd, frrZebra, vtyshBin)
	bins := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	tb, _, _ := missionUp(t, ctx, bins)
	var outcomes []Outcome
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			var out strings.Builder
			r := NewReport(&out)
			start := time.Now()
			err := s.Run(ctx, tb, r)
			outcomes = append(outcomes, Outcome{Scenario: s, Report: r, Err: err, Took: time.Since(start)})
			t.Logf("%s: %s\n%s", s.Name, s.Title, out.String())
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	var summary strings.Builder
	if err := WriteSummary(&summary, outcomes); err != nil {
		t.Fatal(err)
	}
	t.Logf("summary:\n%s", summary.String())
	// The demo's telemetry: the first sample carries the session state.
	var tel strings.Builder
	if _, err := tb.ShowTelemetry(ctx, &tel, TelemetryOptions{Host: "c1", Peer: "d1", Tenant: "red", Duration: 3 * time.Second, Interval: time.Second}); err != nil {
		t.Fatal(err)
	}
	t.Logf("telemetry:\n%s", tel.String())
	if !strings.Contains(tel.String(), "10.20.0.1 ESTABLISHED") {
		t.Errorf("telemetry lacks c1's session to dcgw:\n%s", tel.String())
	}
}
