package k8s

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The images the cluster runs, built by BuildImages and imported on every
// node: nothing is pulled.
const (
	// ImageTag is the tag of both images.
	ImageTag = "testbed"
	// PauseImage is containerd's sandbox image.
	PauseImage = "isthmus.dev/pause:" + ImageTag
	// PodImage runs podserver, the scenarios' workload.
	PodImage = "isthmus.dev/podserver:" + ImageTag
)

// BuildImages builds pause and podserver as static binaries and writes
// them as image archives (tools/images) pause.tar and podserver.tar in out.
func BuildImages(ctx context.Context, repo, out string) error {
	bin := filepath.Join(out, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("build images: %w", err)
	}
	for _, prog := range []string{"pause", "podserver"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w",
			"-o", filepath.Join(bin, prog), "./testbed/k8s/"+prog)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w: %s", prog, err, b)
		}
	}
	cmd := exec.CommandContext(ctx, "go", "run", ".", "build", "-out", out, "-version", ImageTag,
		"pause="+filepath.Join(bin, "pause"), "podserver="+filepath.Join(bin, "podserver"))
	cmd.Dir = filepath.Join(repo, "tools", "images")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("write image archives: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}
