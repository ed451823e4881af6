package testbed

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestHostSetRequest(t *testing.T) {
	topo := Mission()
	data, err := HostSetRequest(topo, "d1")
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		Updates []struct {
			Path     string         `yaml:"path"`
			Encoding string         `yaml:"encoding"`
			Value    map[string]any `yaml:"value"`
		} `yaml:"updates"`
	}
	if err := yaml.Unmarshal(data, &req); err != nil {
		t.Fatal(err)
	}
	byPath := map[string]map[string]any{}
	for _, u := range req.Updates {
		if u.Encoding != "json_ietf" {
			t.Errorf("%s: encoding %q", u.Path, u.Encoding)
		}
		byPath[u.Path] = u.Value
	}
	const bgp = "/network-instances/network-instance[name=default]/protocols/protocol[identifier=BGP][name=bgp]/bgp"
	checks := []struct{ path, key, want string }{
		{"/tunnel/config", "source-address", "10.20.0.11"},
		{"/tunnel/config", "underlay-interface", "eth0"},
		{"/interfaces/interface[name=eth0]/config", "type", "UNDERLAY"},
		{bgp + "/global/config", "as", "65000"},
		{bgp + "/neighbors/neighbor[neighbor-address=10.20.0.1]/config", "peer-as", "65000"},
		{bgp + "/neighbors/neighbor[neighbor-address=10.20.0.1]/afi-safis/afi-safi[afi-safi-name=L3VPN_IPV4_UNICAST]/config", "enabled", "true"},
		{"/network-instances/network-instance[name=red]/config", "route-distinguisher", "10.20.0.11:1"},
		{"/network-instances/network-instance[name=blue]/config", "route-distinguisher", "10.20.0.11:2"},
		{"/network-instances/network-instance[name=blue]/config", "import-route-target", "[65000:101]"},
		{"/network-instances/network-instance[name=red]/address-pools/address-pool[prefix=10.1.3.0/24]/config", "prefix", "10.1.3.0/24"},
	}
	for _, c := range checks {
		v, ok := byPath[c.path]
		if !ok {
			t.Errorf("no update for %s", c.path)
			continue
		}
		if got := strings.TrimSpace(strings.ReplaceAll(yamlString(v[c.key]), "\n", "")); got != c.want {
			t.Errorf("%s %s: got %q, want %q", c.path, c.key, got, c.want)
		}
	}
	if _, err := HostSetRequest(topo, "core"); err == nil {
		t.Error("config for a plain router: want error")
	}
}

func yamlString(v any) string {
	switch v := v.(type) {
	case []any:
		var parts []string
		for _, e := range v {
			parts = append(parts, yamlString(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	default:
		b, _ := yaml.Marshal(v)
		return string(b)
	}
}

func TestTenantValidation(t *testing.T) {
	src := `
name: x
nodes:
  - {name: a, role: host, loopbacks: [10.9.0.1/32]}
  - {name: r, role: router, loopbacks: [10.9.0.2/32]}
tenants:
  - {name: red, route_target: "65000:1", pools: {a: 10.1.0.0/24}}
`
	if _, err := Parse([]byte(src)); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{
		"pools: {a:":    "pools: {r:",
		"\"65000:1\"":   "\"65000\"",
		"name: red":     "name: default",
		"10.1.0.0/24}}": "10.1.0.0/33}}",
	} {
		if _, err := Parse([]byte(strings.Replace(src, from, to, 1))); err == nil {
			t.Errorf("%s → %s: want error", from, to)
		}
	}
}
