package deploy

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	imagesOnce sync.Once
	imagesDir  string // BIN of the one `make images` run; images/ and static/ under it
	imagesErr  error
)

// TestMain removes what makeImages wrote.
func TestMain(m *testing.M) {
	code := m.Run()
	if imagesDir != "" {
		os.RemoveAll(imagesDir)
	}
	os.Exit(code)
}

// makeImages runs `make images` once per test binary, into a temporary BIN.
func makeImages(t *testing.T) string {
	t.Helper()
	imagesOnce.Do(func() {
		if imagesDir, imagesErr = os.MkdirTemp("", "isthmus-images-"); imagesErr != nil {
			return
		}
		if out, err := exec.Command("make", "-C", "..", "--no-print-directory", "images", "BIN="+imagesDir).CombinedOutput(); err != nil {
			imagesErr = fmt.Errorf("make images: %w\n%s", err, out)
		}
	})
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	return imagesDir
}

// imageInfo is what `images inspect` prints.
type imageInfo struct {
	Tags         []string          `json:"tags"`
	OS           string            `json:"os"`
	Architecture string            `json:"architecture"`
	Entrypoint   []string          `json:"entrypoint"`
	Files        map[string]string `json:"files"`
}

// TestMakeImages: `make images` writes one archive per image; each reads
// back with go-containerregistry (tools/images inspect checks every
// layer against the digests the image names) with the tag the chart runs
// by default, and holds the static binaries the chart's commands call.
func TestMakeImages(t *testing.T) {
	bin := makeImages(t)
	objs := render(t)
	version := chartAppVersion(t)
	commands := map[string][]string{} // image → the binaries the chart runs from it
	for _, o := range objs {
		for _, list := range []string{"initContainers", "containers"} {
			cs, _ := o.get("spec", "template", "spec", list).([]any)
			for _, c := range cs {
				c := object(c.(map[string]any))
				img, _ := c.get("image").(string)
				cmd := strs(c.get("command"))
				commands[img] = append(commands[img], cmd[0])
				for _, a := range cmd {
					if strings.HasPrefix(a, "/usr/local/bin/") {
						commands[img] = append(commands[img], a)
					}
				}
			}
		}
	}
	want := map[string][]string{
		"isthmusd":           {"isthmusd", "isthmus-cni"},
		"isthmus-cni":        {"isthmus-cni"},
		"isthmus-controller": {"isthmus-controller"},
	}
	for img, binaries := range want {
		archive := filepath.Join(bin, "images", img+".tar")
		cmd := exec.Command("go", "run", ".", "inspect", archive)
		cmd.Dir = "../tools/images"
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("inspect %s: %v", archive, err)
			continue
		}
		var info imageInfo
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatalf("inspect %s: %v\n%s", archive, err, out)
		}
		tag := "isthmus.dev/" + img + ":" + version
		if len(info.Tags) != 1 || info.Tags[0] != tag {
			t.Errorf("%s: tags %v, want %s", img, info.Tags, tag)
		}
		if info.OS != "linux" || len(info.Entrypoint) != 1 || info.Entrypoint[0] != "/usr/local/bin/"+binaries[0] {
			t.Errorf("%s: os %s entrypoint %v", img, info.OS, info.Entrypoint)
		}
		for _, b := range binaries {
			p := filepath.Join(bin, "static", b)
			if got, want := info.Files["/usr/local/bin/"+b], fileSHA256(t, p); got != want {
				t.Errorf("%s: /usr/local/bin/%s has sha256 %s, the built binary %s", img, b, got, want)
			}
			if interp := interpreter(t, p); interp != "" {
				t.Errorf("%s: %s is dynamically linked (%s); the image has no libc", img, b, interp)
			}
		}
		for _, c := range commands[tag] {
			if info.Files[c] == "" {
				t.Errorf("the chart runs %s from %s, which does not hold it", c, tag)
			}
		}
	}
	for img := range commands {
		if !strings.HasPrefix(img, "isthmus.dev/") || !strings.HasSuffix(img, ":"+version) {
			t.Errorf("the chart runs image %s, which make images does not write", img)
		}
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("isthmus/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "appVersion:"); ok {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Fatal("no appVersion in Chart.yaml")
	return ""
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// interpreter returns the ELF program interpreter of p ("" when static).
func interpreter(t *testing.T, p string) string {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			prog.ReadAt(b, 0)
			return strings.TrimRight(string(b), "\x00")
		}
	}
	return ""
}

// TestImagesTool runs the tests of tools/images, a module of its own that
// `go test ./...` of this module does not reach: among them, an archive
// whose layer differs from the image's diff ID is refused.
func TestImagesTool(t *testing.T) {
	cmd := exec.Command("go", "test", "-count=1", "./...")
	cmd.Dir = "../tools/images"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go test in tools/images: %v\n%s", err, out)
	}
}
