package server

import (
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// svcJSON is service name in red on TCP addr:port with backends, each
// "address:port".
func svcJSON(name, addr, port string, backends ...string) *gpb.TypedValue {
	var bes []string
	for _, b := range backends {
		a, p, _ := strings.Cut(b, ":")
		bes = append(bes, `{"address":"`+a+`","port":`+p+`,"config":{"address":"`+a+`","port":`+p+`}}`)
	}
	return ietf(`{"name":"` + name + `","config":{"name":"` + name + `","address":"` + addr + `","protocol":"TCP","port":` + port + `},
	  "backends":{"backend":[` + strings.Join(bes, ",") + `]}}`)
}

// TestSetInvalidServices: bad services are refused with InvalidArgument
// naming the path, and the running configuration stays as it was.
func TestSetInvalidServices(t *testing.T) {
	e := newTestEnv(t)
	baseConfig(t, e)
	web := red + "/services/service[name=web]"
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{upd(t, web, svcJSON("web", "10.96.0.10", "80", "10.1.0.5:8080", "10.3.0.7:8080"))}}); err != nil {
		t.Fatalf("a valid service (one local backend, one on another host) was refused: %v", err)
	}
	before := e.configJSON(t)
	revision := e.core.Revision()
	api := red + "/services/service[name=api]"
	for _, tc := range []invalidCase{
		{"backend in another vrf", up(api, svcJSON("api", "10.96.0.11", "80", "10.2.0.9:8080")), codes.InvalidArgument,
			[]string{api + "/backends/backend[address=10.2.0.9][port=8080]/config/address", `network instance "blue"`}},
		{"duplicate address port protocol", up(api, svcJSON("api", "10.96.0.10", "80", "10.1.0.5:8080")), codes.InvalidArgument,
			[]string{api + "/config", `already the service "web"`}},
		{"backend port 0", up(api, svcJSON("api", "10.96.0.11", "80", "10.1.0.5:0")), codes.InvalidArgument,
			[]string{api + "/backends/backend[address=10.1.0.5][port=0]/config/port", "1..65535"}},
		{"service port 0", up(api, svcJSON("api", "10.96.0.11", "0", "10.1.0.5:8080")), codes.InvalidArgument,
			[]string{api + "/config/port", "1..65535"}},
		{"address inside a pod pool", up(api, svcJSON("api", "10.1.0.200", "80", "10.1.0.5:8080")), codes.InvalidArgument,
			[]string{api + "/config/address", "pod address pool"}},
		{"changing a port onto another service", up(api, svcJSON("api", "10.96.0.10", "81", "10.1.0.5:8080"), web+"/config/port", uintv(81)), codes.InvalidArgument,
			[]string{"already the service"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.cli.Set(admin(), tc.req(t))
			if err == nil {
				t.Fatalf("accepted; want %s", tc.code)
			}
			st, _ := status.FromError(err)
			if st.Code() != tc.code {
				t.Errorf("code = %s, want %s (%s)", st.Code(), tc.code, st.Message())
			}
			for _, w := range tc.want {
				if !strings.Contains(st.Message(), w) {
					t.Errorf("message %q does not contain %q", st.Message(), w)
				}
			}
			if after := e.configJSON(t); after != before || e.core.Revision() != revision {
				t.Fatalf("configuration changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}
