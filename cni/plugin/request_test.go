package plugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/isthmus-net/isthmus/cni/api"
)

// errCode is the CNI error code of err, 0 for nil and -1 for an error that
// is not a CNI error.
func errCode(err error) int {
	if err == nil {
		return 0
	}
	var te *types.Error
	if !errors.As(err, &te) {
		return -1
	}
	return int(te.Code)
}

const goodConf = `{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni"}`

func goodArgs() *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: "0123abcd", Netns: "/var/run/netns/pod", IfName: "eth0", Path: "/opt/cni/bin",
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1", StdinData: []byte(goodConf),
	}
}

func TestParseRequestAccepts(t *testing.T) {
	req, err := parseRequest(cmdAdd, goodArgs())
	if err != nil {
		t.Fatal(err)
	}
	want := api.AttachmentID{ContainerID: "0123abcd", IfName: "eth0"}
	if req.id != want || req.netns != "/var/run/netns/pod" || req.pod != (api.Pod{Namespace: "shop", Name: "web-1"}) ||
		req.conf.Socket != api.DefaultSocket || req.conf.Name != "red" {
		t.Fatalf("parseRequest = %+v, conf %+v", req, req.conf)
	}
	for _, a := range []func(*skel.CmdArgs){
		func(a *skel.CmdArgs) { a.IfName = "abcdefghijklmno" },                       // 15 bytes
		func(a *skel.CmdArgs) { a.IfName = "net1.100" },                              // dots and digits
		func(a *skel.CmdArgs) { a.IfName = "eth_ü" },                                 // UTF-8 the kernel takes
		func(a *skel.CmdArgs) { a.ContainerID = "A_b.c-" + strings.Repeat("f", 64) }, // runtime IDs
		func(a *skel.CmdArgs) { a.Path = "/opt/cni/bin:/usr/lib/cni:" },
		func(a *skel.CmdArgs) { a.Args = "" },
		func(a *skel.CmdArgs) {
			a.StdinData = []byte(`{"cniVersion":"1.0.0","name":"red","type":"isthmus-cni","socket":"/run/x.sock","mtu":1400,
				"args":{"cni":{"labels":[1]}},"runtimeConfig":{},"capabilities":{"portMappings":false},"ipam":{},"dns":{},"ipMasq":false}`)
		},
	} {
		args := goodArgs()
		a(args)
		if _, err := parseRequest(cmdAdd, args); err != nil {
			t.Errorf("parseRequest(%+v): %v", args, err)
		}
	}
	// DEL needs no netns; GC and STATUS need neither IDs nor netns.
	del := goodArgs()
	del.Netns = ""
	if _, err := parseRequest(cmdDel, del); err != nil {
		t.Errorf("DEL without CNI_NETNS: %v", err)
	}
	for _, cmd := range []string{cmdGC, cmdStatus} {
		if _, err := parseRequest(cmd, &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: []byte(goodConf)}); err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
	}
}

// TestParseRequestRejects covers every argument the plugin refuses and the
// code the runtime sees for it.
func TestParseRequestRejects(t *testing.T) {
	conf := func(s string) func(*skel.CmdArgs) { return func(a *skel.CmdArgs) { a.StdinData = []byte(s) } }
	tests := []struct {
		name string
		cmd  string
		edit func(*skel.CmdArgs)
		code uint
	}{
		{"unknown command", "FROB", func(*skel.CmdArgs) {}, types.ErrInvalidEnvironmentVariables},
		// CNI_IFNAME
		{"ifname empty", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "" }, types.ErrInvalidEnvironmentVariables},
		{"ifname 16 bytes", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "abcdefghijklmnop" }, types.ErrInvalidEnvironmentVariables},
		{"ifname 16 bytes in 8 runes", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "éééééééé" }, types.ErrInvalidEnvironmentVariables},
		{"ifname dot", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "." }, types.ErrInvalidEnvironmentVariables},
		{"ifname dot dot", cmdDel, func(a *skel.CmdArgs) { a.IfName = ".." }, types.ErrInvalidEnvironmentVariables},
		{"ifname slash", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "eth/0" }, types.ErrInvalidEnvironmentVariables},
		{"ifname colon", cmdCheck, func(a *skel.CmdArgs) { a.IfName = "eth0:1" }, types.ErrInvalidEnvironmentVariables},
		{"ifname space", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "eth 0" }, types.ErrInvalidEnvironmentVariables},
		{"ifname tab", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "eth\t0" }, types.ErrInvalidEnvironmentVariables},
		{"ifname no-break space", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "eth\u00a00" }, types.ErrInvalidEnvironmentVariables},
		{"ifname NUL", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "eth\x000" }, types.ErrInvalidEnvironmentVariables},
		{"ifname invalid UTF-8", cmdAdd, func(a *skel.CmdArgs) { a.IfName = "eth\xff" }, types.ErrInvalidEnvironmentVariables},
		// CNI_CONTAINERID
		{"container id empty", cmdAdd, func(a *skel.CmdArgs) { a.ContainerID = "" }, types.ErrInvalidEnvironmentVariables},
		{"container id empty on DEL", cmdDel, func(a *skel.CmdArgs) { a.ContainerID = "" }, types.ErrInvalidEnvironmentVariables},
		{"container id leading dash", cmdAdd, func(a *skel.CmdArgs) { a.ContainerID = "-abc" }, types.ErrInvalidEnvironmentVariables},
		{"container id leading dot", cmdAdd, func(a *skel.CmdArgs) { a.ContainerID = ".abc" }, types.ErrInvalidEnvironmentVariables},
		{"container id slash", cmdCheck, func(a *skel.CmdArgs) { a.ContainerID = "../../etc" }, types.ErrInvalidEnvironmentVariables},
		{"container id space", cmdAdd, func(a *skel.CmdArgs) { a.ContainerID = "a b" }, types.ErrInvalidEnvironmentVariables},
		{"container id non-ASCII", cmdAdd, func(a *skel.CmdArgs) { a.ContainerID = "abcé" }, types.ErrInvalidEnvironmentVariables},
		{"container id too long", cmdAdd, func(a *skel.CmdArgs) { a.ContainerID = strings.Repeat("a", 129) }, types.ErrInvalidEnvironmentVariables},
		// CNI_NETNS
		{"netns missing on ADD", cmdAdd, func(a *skel.CmdArgs) { a.Netns = "" }, types.ErrInvalidEnvironmentVariables},
		{"netns missing on CHECK", cmdCheck, func(a *skel.CmdArgs) { a.Netns = "" }, types.ErrInvalidEnvironmentVariables},
		{"netns relative", cmdAdd, func(a *skel.CmdArgs) { a.Netns = "netns/pod" }, types.ErrInvalidEnvironmentVariables},
		{"netns relative on DEL", cmdDel, func(a *skel.CmdArgs) { a.Netns = "pod" }, types.ErrInvalidEnvironmentVariables},
		{"netns NUL", cmdAdd, func(a *skel.CmdArgs) { a.Netns = "/run/netns/\x00" }, types.ErrInvalidEnvironmentVariables},
		{"netns too long", cmdAdd, func(a *skel.CmdArgs) { a.Netns = "/" + strings.Repeat("a", 4095) }, types.ErrInvalidEnvironmentVariables},
		// CNI_PATH
		{"path missing", cmdAdd, func(a *skel.CmdArgs) { a.Path = "" }, types.ErrInvalidEnvironmentVariables},
		{"path missing on GC", cmdGC, func(a *skel.CmdArgs) { a.Path = "" }, types.ErrInvalidEnvironmentVariables},
		{"path missing on STATUS", cmdStatus, func(a *skel.CmdArgs) { a.Path = "" }, types.ErrInvalidEnvironmentVariables},
		{"path only separators", cmdAdd, func(a *skel.CmdArgs) { a.Path = ":" }, types.ErrInvalidEnvironmentVariables},
		{"path relative", cmdAdd, func(a *skel.CmdArgs) { a.Path = "/opt/cni/bin:bin" }, types.ErrInvalidEnvironmentVariables},
		// CNI_ARGS
		{"args not key=value", cmdAdd, func(a *skel.CmdArgs) { a.Args = "garbage" }, types.ErrInvalidEnvironmentVariables},
		{"args bad namespace", cmdAdd, func(a *skel.CmdArgs) { a.Args = "K8S_POD_NAMESPACE=Shop" }, types.ErrInvalidEnvironmentVariables},
		{"args namespace too long", cmdAdd, func(a *skel.CmdArgs) { a.Args = "K8S_POD_NAMESPACE=" + strings.Repeat("a", 64) }, types.ErrInvalidEnvironmentVariables},
		{"args bad pod name", cmdAdd, func(a *skel.CmdArgs) { a.Args = "K8S_POD_NAME=web..1" }, types.ErrInvalidEnvironmentVariables},
		// stdin
		{"not json", cmdAdd, conf(`{"name":`), types.ErrDecodingFailure},
		{"json null", cmdAdd, conf(`null`), types.ErrDecodingFailure},
		{"json array", cmdAdd, conf(`[]`), types.ErrDecodingFailure},
		{"mtu a string", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","mtu":"1400"}`), types.ErrDecodingFailure},
		{"no cniVersion", cmdAdd, conf(`{"name":"red","type":"isthmus-cni"}`), types.ErrInvalidNetworkConfig},
		{"old cniVersion", cmdAdd, conf(`{"cniVersion":"0.3.1","name":"red","type":"isthmus-cni"}`), types.ErrIncompatibleCNIVersion},
		{"future cniVersion", cmdAdd, conf(`{"cniVersion":"9.0.0","name":"red","type":"isthmus-cni"}`), types.ErrIncompatibleCNIVersion},
		{"GC before 1.1.0", cmdGC, conf(`{"cniVersion":"1.0.0","name":"red","type":"isthmus-cni"}`), types.ErrIncompatibleCNIVersion},
		{"STATUS before 1.1.0", cmdStatus, conf(`{"cniVersion":"0.4.0","name":"red","type":"isthmus-cni"}`), types.ErrIncompatibleCNIVersion},
		{"no name", cmdAdd, conf(`{"cniVersion":"1.1.0","type":"isthmus-cni"}`), types.ErrInvalidNetworkConfig},
		{"bad name", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red net","type":"isthmus-cni"}`), types.ErrInvalidNetworkConfig},
		{"no type", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red"}`), types.ErrInvalidNetworkConfig},
		{"type a path", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"../isthmus-cni"}`), types.ErrInvalidNetworkConfig},
		{"socket relative", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","socket":"cni.sock"}`), types.ErrInvalidNetworkConfig},
		{"socket too long", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","socket":"/` + strings.Repeat("s", 107) + `"}`), types.ErrInvalidNetworkConfig},
		{"mtu too big", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","mtu":65000}`), types.ErrInvalidNetworkConfig},
		{"mtu negative", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","mtu":-1}`), types.ErrInvalidNetworkConfig},
		{"unknown field", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","mut":1400}`), types.ErrUnsupportedField},
		{"field in other case", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","MTU":1400}`), types.ErrUnsupportedField},
		{"ipam", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","ipam":{"type":"host-local"}}`), types.ErrUnsupportedField},
		{"dns", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","dns":{"nameservers":["10.0.0.2"]}}`), types.ErrUnsupportedField},
		{"ipMasq", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","ipMasq":true}`), types.ErrUnsupportedField},
		{"a capability", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","capabilities":{"portMappings":true}}`), types.ErrUnsupportedField},
		{"bad prevResult", cmdAdd, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","prevResult":{"ips":"nope"}}`), types.ErrDecodingFailure},
		{"CHECK without prevResult", cmdCheck, conf(goodConf), types.ErrInvalidNetworkConfig},
		{"GC bad valid attachment", cmdGC, conf(`{"cniVersion":"1.1.0","name":"red","type":"isthmus-cni","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"a/b"}]}`), types.ErrInvalidNetworkConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := goodArgs()
			tt.edit(args)
			_, err := parseRequest(tt.cmd, args)
			if errCode(err) != int(tt.code) {
				t.Fatalf("parseRequest = %v, want code %d", err, tt.code)
			}
			var te *types.Error
			errors.As(err, &te)
			if te.Msg == "" || len(te.Details) > maxDetails {
				t.Fatalf("error %q / %q: want a message and details of at most %d bytes", te.Msg, te.Details, maxDetails)
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
