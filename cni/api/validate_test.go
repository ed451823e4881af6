package api

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateNames(t *testing.T) {
	tests := []struct {
		what  string
		check func(string) error
		ok    []string
		bad   []string
	}{
		{"ifname", ValidateIfName,
			[]string{"eth0", "a", "abcdefghijklmno", "net1.100", "eth-ü", "..."},
			[]string{"", ".", "..", "abcdefghijklmnop", "a/b", "a:b", "a b", "a\tb", "a\nb", "a\u00a0b", "a\x00b", "a\x7fb", "a\xffb"}},
		{"container id", ValidateContainerID,
			[]string{"a", "0", "A_b.c-d", strings.Repeat("f", MaxContainerIDLen)},
			[]string{"", "-a", ".a", "_a", "a/b", "a b", "a:b", "é", strings.Repeat("f", MaxContainerIDLen+1)}},
		{"network", ValidateNetworkName,
			[]string{"red", "tenant-a", "k8s_pods.1"},
			[]string{"", "red net", "red/blue", "-red", strings.Repeat("n", MaxNetworkNameLen+1)}},
	}
	for _, tt := range tests {
		for _, s := range tt.ok {
			if err := tt.check(s); err != nil {
				t.Errorf("%s %q: %v", tt.what, s, err)
			}
		}
		for _, s := range tt.bad {
			if err := tt.check(s); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %q: err = %v, want invalid", tt.what, s, err)
			}
		}
	}
}

func TestValidatePod(t *testing.T) {
	for _, p := range []Pod{{}, {Namespace: "shop", Name: "web-1"}, {Namespace: "a", Name: "a.b-c.d"}, {Name: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63)}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	for _, p := range []Pod{{Namespace: "Shop"}, {Namespace: "-shop"}, {Namespace: "shop-"}, {Namespace: "a.b"}, {Namespace: strings.Repeat("a", 64)},
		{Name: "web..1"}, {Name: ".web"}, {Name: "web_1"}, {Name: strings.Repeat("a.", 127)}} {
		if err := p.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err = %v, want invalid", p, err)
		}
	}
}

func TestQuoteBounds(t *testing.T) {
	if got := Quote(strings.Repeat("x", 1000)); len(got) > 100 || !strings.Contains(got, "1000 bytes") {
		t.Fatalf("Quote = %q", got)
	}
}
