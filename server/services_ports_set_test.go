package server

import (
	"strconv"
	"strings"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// portJSON is a named port of a service: protocol, port and, unless 0,
// target port.
func portJSON(name, proto string, port, target int) *gpb.TypedValue {
	cfg := `"name":"` + name + `","protocol":"` + proto + `","port":` + strconv.Itoa(port)
	if target != 0 {
		cfg += `,"target-port":` + strconv.Itoa(target)
	}
	return ietf(`{"name":"` + name + `","config":{` + cfg + `}}`)
}

// TestSetServicePorts: named ports and the external-traffic scope are
// configured over gNMI like anything else; bad ports (one already taken
// on the address, a target port 0) are refused with InvalidArgument
// naming the path, and nothing of the request is applied.
func TestSetServicePorts(t *testing.T) {
	e := newTestEnv(t)
	baseConfig(t, e)
	web := red + "/services/service[name=web]"
	if _, err := e.cli.Set(admin(), &gpb.SetRequest{Update: []*gpb.Update{
		upd(t, web, svcJSON("web", "10.96.0.10", "80", "10.1.0.5:8080")),
		upd(t, web+"/ports/port[name=https]", portJSON("https", "TCP", 443, 8443)),
		upd(t, web+"/ports/port[name=dns]", portJSON("dns", "UDP", 53, 0)),
		upd(t, web+"/config/external-traffic-scope", str("ALL")),
	}}); err != nil {
		t.Fatalf("a service with named ports was refused: %v", err)
	}
	if got := leafMap(t, getOne(t, e, gpb.GetRequest_CONFIG, gpb.Encoding_PROTO, web+"/ports/port[name=https]/config/target-port")); len(got) != 1 {
		t.Errorf("target port not in the running configuration: %v", got)
	}
	before := e.configJSON(t)
	revision := e.core.Revision()
	api := red + "/services/service[name=api]"
	for _, tc := range []invalidCase{
		{"named port on a port another service has", up(api, svcJSON("api", "10.96.0.10", "8080", "10.1.0.5:8080"), api+"/ports/port[name=alt]", portJSON("alt", "TCP", 443, 0)), codes.InvalidArgument,
			[]string{api + "/ports/port[name=alt]/config", `TCP 10.96.0.10:443 is already port "https" of the service "web"`}},
		{"target port 0", up(web+"/ports/port[name=alt]", portJSON("alt", "TCP", 8000, 0), web+"/ports/port[name=alt]/config/target-port", uintv(0)), codes.InvalidArgument,
			[]string{web + "/ports/port[name=alt]/config/target-port", "1..65535"}},
		{"named port 0", up(web+"/ports/port[name=alt]", portJSON("alt", "TCP", 0, 0)), codes.InvalidArgument,
			[]string{web + "/ports/port[name=alt]/config/port", "1..65535"}},
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
