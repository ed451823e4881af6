package plugin

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/isthmus-net/isthmus/cni/api"
)

// fuzzCommands are the commands FuzzParseRequest picks from by index; the
// last one is not a CNI command.
var fuzzCommands = []string{cmdAdd, cmdDel, cmdCheck, cmdGC, cmdStatus, "VERSION"}

// specCodes are the codes parseRequest may return.
var specCodes = []uint{
	types.ErrIncompatibleCNIVersion, types.ErrUnsupportedField, types.ErrInvalidEnvironmentVariables,
	types.ErrDecodingFailure, types.ErrInvalidNetworkConfig,
}

// FuzzParseRequest feeds arbitrary environments and configurations to the
// step that checks a command's input before anything is acted on. It must
// never panic; whatever it refuses must be a CNI error with one of the
// specification's codes and bounded details; whatever it accepts must be
// safe to act on: names the kernel and the daemon take unchanged, absolute
// paths, a supported version.
func FuzzParseRequest(f *testing.F) {
	f.Add(uint8(0), []byte(goodConf), "0123abcd", "/var/run/netns/pod", "eth0", "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1", "/opt/cni/bin")
	f.Fuzz(func(t *testing.T, c uint8, stdin []byte, containerID, netns, ifname, cniArgs, path string) {
		cmd := fuzzCommands[int(c)%len(fuzzCommands)]
		args := &skel.CmdArgs{ContainerID: containerID, Netns: netns, IfName: ifname, Args: cniArgs, Path: path, StdinData: stdin}
		req, err := parseRequest(cmd, args)
		if err != nil {
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("%s: error %v (%T) is not a CNI error", cmd, err, err)
			}
			if !slices.Contains(specCodes, te.Code) {
				t.Fatalf("%s: error code %d (%v) is not one of %v", cmd, te.Code, te, specCodes)
			}
			if te.Msg == "" || len(te.Details) > maxDetails {
				t.Fatalf("%s: error %q / %q: want a message and at most %d bytes of details", cmd, te.Msg, te.Details, maxDetails)
			}
			return
		}
		if cmd == "VERSION" {
			t.Fatal("VERSION accepted: it is not the plugin's to parse")
		}
		checkAccepted(t, cmd, args, req)
		again, err := parseRequest(cmd, args)
		if err != nil || again.id != req.id || again.pod != req.pod || again.netns != req.netns {
			t.Fatalf("%s: second parse of the same input = %+v, %v; first %+v", cmd, again, err, req)
		}
	})
}

// checkAccepted checks what parseRequest let through.
func checkAccepted(t *testing.T, cmd string, args *skel.CmdArgs, req *request) {
	t.Helper()
	conf := req.conf
	if !slices.Contains(SupportedVersions.SupportedVersions(), conf.CNIVersion) {
		t.Fatalf("accepted cniVersion %q", conf.CNIVersion)
	}
	if conf.Name == "" || conf.Type == "" || strings.Contains(conf.Type, "/") {
		t.Fatalf("accepted name %q, type %q", conf.Name, conf.Type)
	}
	if !filepath.IsAbs(conf.Socket) || len(conf.Socket) > maxSocketLen || strings.IndexByte(conf.Socket, 0) >= 0 {
		t.Fatalf("accepted socket %q", conf.Socket)
	}
	if conf.MTU != 0 && (conf.MTU < 576 || conf.MTU > 9216) {
		t.Fatalf("accepted mtu %d", conf.MTU)
	}
	if cmd == cmdCheck && conf.PrevResult == nil {
		t.Fatal("accepted CHECK without prevResult")
	}
	if !filepath.IsAbs(strings.Split(strings.Trim(args.Path, ":"), ":")[0]) {
		t.Fatalf("accepted CNI_PATH %q", args.Path)
	}
	if p := req.pod; len(p.Namespace) > 63 || strings.ContainsAny(p.Namespace+p.Name, "/: \t\n\x00") {
		t.Fatalf("accepted pod %+v", p)
	}
	ids := []api.AttachmentID{req.id}
	for _, a := range conf.ValidAttachments {
		ids = append(ids, api.AttachmentID{ContainerID: a.ContainerID, IfName: a.IfName})
	}
	if cmd != cmdAdd && cmd != cmdDel && cmd != cmdCheck {
		ids = ids[1:]
	} else {
		if req.id != (api.AttachmentID{ContainerID: args.ContainerID, IfName: args.IfName}) {
			t.Fatalf("attachment %+v is not what the environment said", req.id)
		}
		if (cmd != cmdDel || req.netns != "") && !filepath.IsAbs(req.netns) {
			t.Fatalf("accepted netns %q", req.netns)
		}
	}
	for _, id := range ids {
		checkAcceptedID(t, conf.Name, id)
	}
}

// checkAcceptedID checks an accepted attachment ID against the kernel's
// rules for interface names and alias lengths, and that it crosses the
// daemon's JSON socket unchanged.
func checkAcceptedID(t *testing.T, network string, id api.AttachmentID) {
	t.Helper()
	n := id.IfName
	if n == "" || len(n) > 15 || n == "." || n == ".." || strings.ContainsAny(n, "/: \t\n\v\f\r\x00") || !utf8.ValidString(n) {
		t.Fatalf("accepted ifname %q", n)
	}
	if c := id.ContainerID; c == "" || strings.ContainsAny(c, "/: \t\n\x00") || c[0] == '-' || c[0] == '.' || c[0] == '_' {
		t.Fatalf("accepted container id %q", c)
	}
	if len(HostIfName(id.ContainerID, id.IfName)) != 15 || len(hostAlias(network, id)) > 255 {
		t.Fatalf("accepted %+v in %q: host name or alias too long", id, network)
	}
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatalf("encode %+v: %v", id, err)
	}
	var back api.AttachmentID
	if err := json.Unmarshal(b, &back); err != nil || back != id {
		t.Fatalf("attachment %+v comes back from JSON as %+v (%v)", id, back, err)
	}
}
