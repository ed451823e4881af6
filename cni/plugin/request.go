package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/isthmus-net/isthmus/cni/api"
)

// The commands, as CNI_COMMAND names them.
const (
	cmdAdd    = "ADD"
	cmdDel    = "DEL"
	cmdCheck  = "CHECK"
	cmdGC     = "GC"
	cmdStatus = "STATUS"
)

// Limits on paths: the kernel's PATH_MAX, and the room for a unix socket's
// path (sun_path holds 108 bytes with the terminating NUL).
const (
	maxPathLen   = 4095
	maxSocketLen = 107
)

// request is one command's input once every part of it has been checked;
// nothing has been acted on before it exists.
type request struct {
	conf *NetConf
	// id is CNI_CONTAINERID and CNI_IFNAME (ADD, CHECK, DEL).
	id api.AttachmentID
	// netns is CNI_NETNS (ADD, CHECK; DEL when the runtime gives it).
	netns string
	// pod is the Kubernetes identity from CNI_ARGS (ADD).
	pod api.Pod
}

// parseRequest checks a command's environment and then its configuration,
// and returns a CNI error with the specification's code for the first thing
// that is wrong: 4 for an environment variable, 6 for what does not decode,
// 1 for an unsupported cniVersion, 2 for configuration the plugin would
// not act on, 7 for an invalid value.
func parseRequest(cmd string, args *skel.CmdArgs) (*request, error) {
	if err := checkEnv(cmd, args); err != nil {
		return nil, err
	}
	conf, err := parseConf(cmd, args.StdinData)
	if err != nil {
		return nil, err
	}
	req := &request{conf: conf, netns: args.Netns}
	if cmd == cmdAdd || cmd == cmdCheck || cmd == cmdDel {
		req.id = api.AttachmentID{ContainerID: args.ContainerID, IfName: args.IfName}
	}
	if cmd == cmdAdd {
		if req.pod, err = parsePod(args.Args); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// checkEnv checks the CNI_* variables the command needs: CNI_CONTAINERID,
// CNI_IFNAME and CNI_NETNS for ADD and CHECK (DEL: CNI_NETNS only when
// given), CNI_PATH for every command.
func checkEnv(cmd string, a *skel.CmdArgs) error {
	switch cmd {
	case cmdAdd, cmdCheck, cmdDel:
		if err := api.ValidateContainerID(a.ContainerID); err != nil {
			return envError("CNI_CONTAINERID", err)
		}
		if err := api.ValidateIfName(a.IfName); err != nil {
			return envError("CNI_IFNAME", err)
		}
		if a.Netns != "" || cmd != cmdDel {
			if err := checkNetns(a.Netns); err != nil {
				return envError("CNI_NETNS", err)
			}
		}
	case cmdGC, cmdStatus:
	default:
		return types.NewError(types.ErrInvalidEnvironmentVariables, "unknown CNI_COMMAND", api.Quote(cmd))
	}
	if err := checkPath(a.Path); err != nil {
		return envError("CNI_PATH", err)
	}
	return nil
}

func checkNetns(p string) error {
	if p == "" {
		return fmt.Errorf("%w: netns path is empty", api.ErrInvalid)
	}
	return checkFilePath("netns path", p, maxPathLen)
}

// checkPath checks CNI_PATH: a list of absolute directories.
func checkPath(list string) error {
	if list == "" {
		return fmt.Errorf("%w: plugin search path is empty", api.ErrInvalid)
	}
	dirs := 0
	for dir := range strings.SplitSeq(list, string(filepath.ListSeparator)) {
		if dir == "" {
			continue
		}
		if err := checkFilePath("plugin directory", dir, maxPathLen); err != nil {
			return err
		}
		dirs++
	}
	if dirs == 0 {
		return fmt.Errorf("%w: plugin search path %s names no directory", api.ErrInvalid, api.Quote(list))
	}
	return nil
}

// checkFilePath checks that p is an absolute path without NUL bytes and
// at most max bytes long.
func checkFilePath(what, p string, max int) error {
	switch {
	case len(p) > max:
		return fmt.Errorf("%w: %s is %d bytes, at most %d allowed", api.ErrInvalid, what, len(p), max)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%w: %s %s contains a NUL byte", api.ErrInvalid, what, api.Quote(p))
	case !filepath.IsAbs(p):
		return fmt.Errorf("%w: %s %s is not absolute", api.ErrInvalid, what, api.Quote(p))
	}
	return nil
}

func envError(name string, err error) error {
	return types.NewError(types.ErrInvalidEnvironmentVariables, "invalid "+name, reason(err))
}

func confError(code uint, msg string, err error) error {
	return types.NewError(code, msg, reason(err))
}

// reason is err's text without the sentinel's prefix.
func reason(err error) string {
	return detail(strings.TrimPrefix(err.Error(), api.ErrInvalid.Error()+": "))
}

// maxDetails bounds an error's details, which may quote what was rejected.
const maxDetails = 256

// detail cuts s to maxDetails bytes, on a rune boundary.
func detail(s string) string {
	if len(s) <= maxDetails {
		return s
	}
	cut := maxDetails - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// confKeys are the configuration keys the plugin knows. The runtime adds
// cniVersion, name, prevResult, runtimeConfig and cni.dev/valid-attachments;
// args is the specification's free-form field that plugins ignore.
var confKeys = map[string]bool{
	"cniVersion": true, "name": true, "type": true, "socket": true, "mtu": true,
	"prevResult": true, "cni.dev/valid-attachments": true, "runtimeConfig": true, "args": true,
	// Well-known keys the plugin cannot act on; refused below when set.
	"capabilities": true, "ipam": true, "dns": true, "ipMasq": true,
}

// parseConf decodes and checks the network configuration on stdin for cmd.
func parseConf(cmd string, stdin []byte) (*NetConf, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &raw); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode network configuration", detail(err.Error()))
	}
	if raw == nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode network configuration", "not a JSON object")
	}
	if err := checkKeys(raw); err != nil {
		return nil, err
	}
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode network configuration", detail(err.Error()))
	}
	if err := checkVersion(cmd, conf.CNIVersion); err != nil {
		return nil, err
	}
	if err := api.ValidateNetworkName(conf.Name); err != nil {
		return nil, confError(types.ErrInvalidNetworkConfig, "invalid network name", err)
	}
	if t := conf.Type; t == "" || t == "." || t == ".." || strings.ContainsAny(t, "/\x00") || len(t) > 255 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid type", "type "+api.Quote(t)+": want the plugin's file name")
	}
	if conf.Socket == "" {
		conf.Socket = api.DefaultSocket
	} else if err := checkFilePath("socket", conf.Socket, maxSocketLen); err != nil {
		return nil, confError(types.ErrInvalidNetworkConfig, "invalid socket", err)
	}
	if conf.MTU != 0 && (conf.MTU < 576 || conf.MTU > 9216) {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid mtu", fmt.Sprintf("mtu %d: want 576 to 9216", conf.MTU))
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode prevResult", detail(err.Error()))
	}
	if cmd == cmdCheck && conf.PrevResult == nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "check needs prevResult", "")
	}
	for i, a := range conf.ValidAttachments {
		if err := (api.AttachmentID{ContainerID: a.ContainerID, IfName: a.IfName}).Validate(); err != nil {
			return nil, confError(types.ErrInvalidNetworkConfig, fmt.Sprintf("invalid cni.dev/valid-attachments[%d]", i), err)
		}
	}
	return conf, nil
}

// checkKeys refuses keys the plugin does not know, and well-known keys it
// would not act on: it has no capabilities, takes addresses from isthmusd
// rather than an IPAM plugin, passes no DNS settings and never masquerades.
// The error names the key and its value, as the specification asks.
func checkKeys(raw map[string]json.RawMessage) error {
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := raw[k]
		unsupported := !confKeys[k]
		switch k {
		case "capabilities":
			var caps map[string]bool
			if err := json.Unmarshal(v, &caps); err != nil {
				return types.NewError(types.ErrDecodingFailure, "decode capabilities", detail(err.Error()))
			}
			for _, on := range caps {
				unsupported = unsupported || on
			}
		case "ipam", "dns":
			unsupported = !emptyJSON(v)
		case "ipMasq":
			var on bool
			if err := json.Unmarshal(v, &on); err != nil {
				return types.NewError(types.ErrDecodingFailure, "decode ipMasq", detail(err.Error()))
			}
			unsupported = on
		}
		if unsupported {
			return types.NewError(types.ErrUnsupportedField, "unsupported field "+api.Quote(k),
				api.Quote(k)+": "+api.Quote(string(v)))
		}
	}
	return nil
}

// emptyJSON reports whether a JSON value carries nothing: null, false, 0,
// "", [] or {}, or an object whose values all carry nothing.
func emptyJSON(v json.RawMessage) bool {
	var x any
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	if err := d.Decode(&x); err != nil {
		return false
	}
	return emptyValue(x)
}

func emptyValue(x any) bool {
	switch x := x.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case json.Number:
		return strings.Trim(string(x), "0.-+eE") == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, e := range x {
			if !emptyValue(e) {
				return false
			}
		}
		return true
	}
	return false
}

// checkVersion checks cniVersion: one the plugin supports, and 1.1.0 or
// later for GC and STATUS, which 1.1.0 introduced.
func checkVersion(cmd, v string) error {
	if v == "" {
		return types.NewError(types.ErrInvalidNetworkConfig, "network configuration has no cniVersion", "")
	}
	supported := SupportedVersions.SupportedVersions()
	if !slices.Contains(supported, v) {
		return types.NewError(types.ErrIncompatibleCNIVersion, "unsupported cniVersion",
			fmt.Sprintf("cniVersion %s: want one of %s", api.Quote(v), strings.Join(supported, ", ")))
	}
	if cmd == cmdGC || cmd == cmdStatus {
		if ok, err := version.GreaterThanOrEqualTo(v, "1.1.0"); err != nil || !ok {
			return types.NewError(types.ErrIncompatibleCNIVersion, "cniVersion "+v+" has no "+cmd, "want 1.1.0 or later")
		}
	}
	return nil
}

// podArgs are the CNI_ARGS the plugin reads; field names are the keys.
type podArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE types.UnmarshallableString
	K8S_POD_NAME      types.UnmarshallableString
}

// parsePod reads and checks the Kubernetes pod identity from CNI_ARGS.
func parsePod(args string) (api.Pod, error) {
	var a podArgs
	a.IgnoreUnknown = true
	if err := types.LoadArgs(args, &a); err != nil {
		return api.Pod{}, types.NewError(types.ErrInvalidEnvironmentVariables, "invalid CNI_ARGS", detail(err.Error()))
	}
	pod := api.Pod{Namespace: string(a.K8S_POD_NAMESPACE), Name: string(a.K8S_POD_NAME)}
	if err := pod.Validate(); err != nil {
		return api.Pod{}, envError("CNI_ARGS", err)
	}
	return pod, nil
}
