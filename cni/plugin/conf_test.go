package plugin

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/isthmus-net/isthmus/cni/api"
)

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
