package daemon

import (
	"errors"
	"testing"

	"github.com/isthmus-net/isthmus/cni/api"
)

func TestChooseVRF(t *testing.T) {
	shop := api.Pod{Namespace: "shop", Name: "web-1"}
	none := api.Pod{}
	tests := []struct {
		name    string
		cfg     Config
		network string
		pod     api.Pod
		want    string
		wantErr error
	}{
		{"default mode uses the network name", Config{}, "tenant-a", shop, "tenant-a", nil},
		{"default mode outside kubernetes", Config{}, "tenant-a", none, "tenant-a", nil},
		{"network mode with one vrf for all", Config{Mode: ModeNetwork, VRF: "pods"}, "k8s", shop, "pods", nil},
		{"network map wins over vrf", Config{VRF: "pods", Networks: map[string]string{"k8s": "red"}}, "k8s", shop, "red", nil},
		{"network map misses", Config{Networks: map[string]string{"other": "red"}}, "k8s", shop, "k8s", nil},
		{"namespace isolation", Config{Mode: ModeNamespaceIsolation}, "k8s", shop, "shop", nil},
		{"namespace isolation with prefix", Config{Mode: ModeNamespaceIsolation, VRFPrefix: "tenant-"}, "k8s", shop, "tenant-shop", nil},
		{"namespace isolation needs a namespace", Config{Mode: ModeNamespaceIsolation}, "k8s", none, "", api.ErrInvalid},
		{"namespace rule overrides isolation", Config{Mode: ModeNamespaceIsolation, Namespaces: map[string]string{"shop": "retail"}}, "k8s", shop, "retail", nil},
		{"namespace rule overrides network mode", Config{VRF: "pods", Namespaces: map[string]string{"shop": "retail"}}, "k8s", shop, "retail", nil},
		{"empty network", Config{}, "", shop, "", api.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseVRF(tt.cfg, tt.network, tt.pod)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("vrf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"isolation", Config{Mode: ModeNamespaceIsolation}, true},
		{"bad mode", Config{Mode: "flat"}, false},
		{"gateway not link-local", Config{Gateway: "10.0.0.1"}, false},
		{"gateway garbage", Config{Gateway: "gw"}, false},
		{"mtu too small", Config{MTU: 100}, false},
		{"mtu fine", Config{MTU: 8950}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
