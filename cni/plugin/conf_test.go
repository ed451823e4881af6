package plugin

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/isthmus-net/isthmus/cni/api"
)

func TestParseConf(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode uint // 0: no error
		socket   string
	}{
		{"minimal", `{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni"}`, 0, api.DefaultSocket},
		{"socket and mtu", `{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","socket":"/tmp/x.sock","mtu":1400}`, 0, "/tmp/x.sock"},
		{"not json", `{"name":`, types.ErrDecodingFailure, ""},
		{"no name", `{"cniVersion":"1.1.0","type":"isthmus-cni"}`, types.ErrInvalidNetworkConfig, ""},
		{"mtu too big", `{"cniVersion":"1.1.0","name":"red","mtu":65000}`, types.ErrInvalidNetworkConfig, ""},
		{"bad prevResult", `{"cniVersion":"1.1.0","name":"red","prevResult":{"ips":"nope"}}`, types.ErrDecodingFailure, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := parseConf([]byte(tt.in))
			if tt.wantCode == 0 {
				if err != nil || conf.Socket != tt.socket {
					t.Fatalf("parseConf = %+v, %v", conf, err)
				}
				return
			}
			var te *types.Error
			if !errors.As(err, &te) || te.Code != tt.wantCode {
				t.Fatalf("err = %v, want code %d", err, tt.wantCode)
			}
		})
	}
}

func TestParsePod(t *testing.T) {
	pod, err := parsePod("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=abc")
	if err != nil || pod != (api.Pod{Namespace: "shop", Name: "web-1"}) {
		t.Fatalf("parsePod = %+v, %v", pod, err)
	}
	if pod, err := parsePod(""); err != nil || pod != (api.Pod{}) {
		t.Fatalf("parsePod of nothing = %+v, %v", pod, err)
	}
	if _, err := parsePod("garbage"); err == nil {
		t.Fatal("parsePod accepted garbage")
	}
}

func TestHostIfName(t *testing.T) {
	a, b := HostIfName("c1", "eth0"), HostIfName("c1", "eth1")
	if len(a) != 15 || a == b || a != HostIfName("c1", "eth0") {
		t.Fatalf("HostIfName = %q, %q", a, b)
	}
}

func TestCNIError(t *testing.T) {
	tests := []struct {
		err  error
		code uint
	}{
		{fmt.Errorf("call Add: %w", api.ErrUnknownNetwork), CodeUnknownNetwork},
		{fmt.Errorf("call Add: %w", api.ErrPoolExhausted), CodePoolExhausted},
		{fmt.Errorf("call Add: %w", api.ErrUnavailable), types.ErrTryAgainLater},
		{fmt.Errorf("call Add: %w", api.ErrInvalid), types.ErrInvalidNetworkConfig},
		{fmt.Errorf("call Get: %w", api.ErrNoAttachment), types.ErrUnknownContainer},
		{errors.New("something else"), types.ErrInternal},
		{types.NewError(types.ErrIOFailure, "io", ""), types.ErrIOFailure},
	}
	for _, tt := range tests {
		var te *types.Error
		if err := cniError("add pod", tt.err); !errors.As(err, &te) || te.Code != tt.code {
			t.Errorf("cniError(%v) = %v, want code %d", tt.err, err, tt.code)
		}
	}
	if cniError("x", nil) != nil {
		t.Error("cniError(nil) is not nil")
	}
}
