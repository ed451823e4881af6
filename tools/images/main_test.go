package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildInspect: an archive built from two files reads back with
// go-containerregistry with its tag, platform, entrypoint, both files
// (content and mode) and matching layer digests; a second build of the
// same files is the same image.
func TestBuildInspect(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "isthmusd"), filepath.Join(dir, "isthmus-cni")
	os.WriteFile(a, []byte("daemon bytes"), 0o755)
	os.WriteFile(b, []byte("plugin bytes"), 0o755)
	out := filepath.Join(dir, "out")
	var stdout, stderr strings.Builder
	if err := run([]string{"build", "-out", out, "-version", "1.2.3", "-arch", "amd64", "isthmusd=" + a + "," + b}, &stdout, &stderr); err != nil {
		t.Fatalf("build: %v %s", err, stderr.String())
	}
	info, err := inspect(filepath.Join(out, "isthmusd.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Tags) != 1 || info.Tags[0] != "isthmus.dev/isthmusd:1.2.3" {
		t.Errorf("tags %v", info.Tags)
	}
	if info.OS != "linux" || info.Architecture != "amd64" {
		t.Errorf("platform %s/%s", info.OS, info.Architecture)
	}
	if len(info.Entrypoint) != 1 || info.Entrypoint[0] != "/usr/local/bin/isthmusd" {
		t.Errorf("entrypoint %v", info.Entrypoint)
	}
	for p, content := range map[string]string{"/usr/local/bin/isthmusd": "daemon bytes", "/usr/local/bin/isthmus-cni": "plugin bytes"} {
		sum := sha256.Sum256([]byte(content))
		if info.Files[p] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: sha256 %s, want that of %q", p, info.Files[p], content)
		}
		if info.Modes[p] != "755" {
			t.Errorf("%s: mode %s, want 755", p, info.Modes[p])
		}
	}
	if info.Modes["/tmp"] != "1777" {
		t.Errorf("/tmp mode %s", info.Modes["/tmp"])
	}

	again := filepath.Join(dir, "again")
	if err := run([]string{"build", "-out", again, "-version", "1.2.3", "-arch", "amd64", "isthmusd=" + a + "," + b}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	info2, err := inspect(filepath.Join(again, "isthmusd.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if info2.Digest != info.Digest {
		t.Errorf("two builds of the same files: %s and %s", info.Digest, info2.Digest)
	}
}

// TestInspectRefusesSwappedLayer: a layer whose content is not the one the
// image config's diff ID names (here one byte of a file changed and the
// layer compressed again, so the gzip stream itself is sound) is an
// error, not a silently different image.
func TestInspectRefusesSwappedLayer(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "tool")
	os.WriteFile(a, []byte(strings.Repeat("isthmus ", 4096)), 0o755)
	var sb strings.Builder
	if err := run([]string{"build", "-out", dir, "-version", "1", "tool=" + a}, &sb, &sb); err != nil {
		t.Fatal(err)
	}
	if _, err := inspect(filepath.Join(dir, "tool.tar")); err != nil {
		t.Fatalf("inspect of the untouched archive: %v", err)
	}
	in, err := os.Open(filepath.Join(dir, "tool.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, "swapped.tar")
	outF, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	tr, tw := tar.NewReader(in), tar.NewWriter(outF)
	swapped := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			plain, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(plain, []byte("isthmus "))
			plain[i] = 'I'
			var re bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&re, gzip.NoCompression)
			zw.Write(plain)
			zw.Close()
			body, swapped = re.Bytes(), true
			h.Size = int64(len(body))
		}
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	outF.Close()
	if !swapped {
		t.Fatal("no gzip layer in the archive")
	}
	if _, err := inspect(dst); err == nil || !strings.Contains(err.Error(), "uncompressed: digest") {
		t.Fatalf("inspect of an archive whose layer does not match its digest: %v", err)
	}
}

func TestBadSpecs(t *testing.T) {
	var sb strings.Builder
	for _, args := range [][]string{
		{"build", "-out", t.TempDir(), "-version", "1", "noequals"},
		{"build", "-out", t.TempDir(), "isthmusd=/x"},
		{"build", "-out", t.TempDir(), "-version", "1", "isthmusd=/no/such/file"},
		{"build", "-out", t.TempDir(), "-version", "bad tag!", "isthmusd=/x"},
		{"frobnicate"},
	} {
		if err := run(args, &sb, &sb); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
