package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
)

// PrefixBase starts every run prefix; `down --all` sweeps namespaces with it.
const PrefixBase = "ist-"

var (
	prefixPattern = regexp.MustCompile(`^ist-[0-9a-f]{6}-$`)
	needsQuote    = regexp.MustCompile(`[^A-Za-z0-9_./:=@+-]`)
)

// NewPrefix returns a fresh run prefix such as "ist-3fa9c1-".
func NewPrefix() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("read random: %v", err)) // crypto/rand never fails on Linux
	}
	return PrefixBase + hex.EncodeToString(b[:]) + "-"
}

// ValidPrefix reports whether p has the form NewPrefix returns.
func ValidPrefix(p string) bool { return prefixPattern.MatchString(p) }

// StepKind says what a step creates, so the builder can record it first.
type StepKind int

// The kinds of steps.
const (
	// StepNamespace creates a namespace; the builder records it in the
	// state file before running the step.
	StepNamespace StepKind = iota
	// StepConfigure changes something inside namespaces that already exist.
	StepConfigure
)

// Step is one command of a plan. Every command runs in the caller's
// namespace and names its target namespaces explicitly.
type Step struct {
	// Kind says what the step creates.
	Kind StepKind
	// Namespace is the namespace the step creates or configures.
	Namespace string
	// Argv is the command line.
	Argv []string
}

// String renders the step as a shell command line.
func (s Step) String() string {
	out := ""
	for i, a := range s.Argv {
		if i > 0 {
			out += " "
		}
		if a == "" || needsQuote.MatchString(a) {
			a = strconv.Quote(a)
		}
		out += a
	}
	return out
}

// Namespace returns the namespace name of node in the run with prefix.
func Namespace(prefix, node string) string { return prefix + node }

// Plan turns a topology into the ordered steps that build it: namespaces,
// loopbacks and sysctls, bridges, veth pairs with addresses, then routes.
// It is pure; running the steps in order builds the topology.
func Plan(t *Topology, prefix string) []Step {
	var steps []Step
	ns := func(node string) string { return Namespace(prefix, node) }
	conf := func(node string, argv ...string) {
		steps = append(steps, Step{Kind: StepConfigure, Namespace: ns(node), Argv: argv})
	}
	for _, n := range t.Nodes {
		steps = append(steps, Step{Kind: StepNamespace, Namespace: ns(n.Name), Argv: []string{"ip", "netns", "add", ns(n.Name)}})
		conf(n.Name, "ip", "-n", ns(n.Name), "link", "set", "lo", "up")
		for _, a := range n.Loopbacks {
			conf(n.Name, "ip", "-n", ns(n.Name), "addr", "add", a, "dev", "lo")
		}
		for _, kv := range nodeSysctls(n) {
			conf(n.Name, "ip", "netns", "exec", ns(n.Name), "sysctl", "-qw", kv)
		}
		for _, b := range n.Bridges {
			conf(n.Name, "ip", "-n", ns(n.Name), "link", "add", b.Name, "type", "bridge")
			for _, a := range b.Addresses {
				conf(n.Name, "ip", "-n", ns(n.Name), "addr", "add", a, "dev", b.Name)
			}
			conf(n.Name, "ip", "-n", ns(n.Name), "link", "set", b.Name, "up")
		}
	}
	for _, l := range t.Links {
		conf(l.A.Node, "ip", "link", "add", l.A.Interface, "netns", ns(l.A.Node),
			"type", "veth", "peer", "name", l.B.Interface, "netns", ns(l.B.Node))
		for _, e := range []End{l.A, l.B} {
			if l.MTU > 0 {
				conf(e.Node, "ip", "-n", ns(e.Node), "link", "set", e.Interface, "mtu", strconv.Itoa(l.MTU))
			}
			if e.Bridge != "" {
				conf(e.Node, "ip", "-n", ns(e.Node), "link", "set", e.Interface, "master", e.Bridge)
			}
			for _, a := range e.Addresses {
				conf(e.Node, "ip", "-n", ns(e.Node), "addr", "add", a, "dev", e.Interface)
			}
			conf(e.Node, "ip", "-n", ns(e.Node), "link", "set", e.Interface, "up")
		}
	}
	for _, n := range t.Nodes {
		for _, r := range n.Routes {
			conf(n.Name, "ip", "-n", ns(n.Name), "route", "add", r.To, "via", r.Via)
		}
	}
	return steps
}

// nodeSysctls returns the sorted key=value sysctls of a node: role defaults
// first overridden by the node's own. Reverse-path filtering is off
// everywhere, since tunnels and asymmetric test paths trip it; IPv6 is off,
// since the topology is IPv4 and its link-local chatter muddies captures.
func nodeSysctls(n Node) []string {
	kv := map[string]string{
		"net.ipv4.conf.all.rp_filter":        "0",
		"net.ipv4.conf.default.rp_filter":    "0",
		"net.ipv6.conf.all.disable_ipv6":     "1",
		"net.ipv6.conf.default.disable_ipv6": "1",
	}
	if n.Role == RoleRouter || n.Role == RoleBGPRouter {
		kv["net.ipv4.ip_forward"] = "1"
	}
	maps.Copy(kv, n.Sysctls)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		out = append(out, k+"="+kv[k])
	}
	return out
}
