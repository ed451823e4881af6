package daemon

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestReadmeConfigExample decodes the `cni:` example in cni/README.md the
// way isthmusd loads its file (unknown keys are errors), so the example
// cannot drift from Config.
func TestReadmeConfigExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README has no yaml example")
	}
	var file struct {
		CNI Config `yaml:"cni"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(example)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("decode README example: %v", err)
	}
	cfg := file.CNI.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("README example does not validate: %v", err)
	}
	if cfg.Mode != ModeNamespaceIsolation || cfg.VRFPrefix != "k8s-" || cfg.Namespaces["kube-system"] != "infra" ||
		cfg.Networks["tenant-a"] != "red" || cfg.EncapOverhead != 50 {
		t.Fatalf("decoded %+v", cfg)
	}
}
