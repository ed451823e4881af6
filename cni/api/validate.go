package api

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on the names a pod attachment carries. The host end's alias is
// "isthmus-cni:<network>/<container id>/<ifname>" and the kernel keeps at
// most 255 bytes of an alias, so the container ID and the network name are
// bounded to fit it together with the longest interface name.
const (
	// MaxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ-1).
	MaxIfNameLen = 15
	// MaxContainerIDLen is the longest container ID accepted. Runtimes use
	// 64 hex digits.
	MaxContainerIDLen = 128
	// MaxNetworkNameLen is the longest network name accepted.
	MaxNetworkNameLen = 96
	// maxDNSLabelLen and maxDNSNameLen are RFC 1123's limits, which
	// Kubernetes applies to namespace and pod names.
	maxDNSLabelLen = 63
	maxDNSNameLen  = 253
)

// ValidateContainerID checks a container ID as CNI runtimes produce it: a
// letter or digit, then letters, digits, '_', '.' or '-'.
func ValidateContainerID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: container id is empty", ErrInvalid)
	}
	if len(id) > MaxContainerIDLen {
		return fmt.Errorf("%w: container id is %d bytes, at most %d allowed", ErrInvalid, len(id), MaxContainerIDLen)
	}
	if !isName(id) {
		return fmt.Errorf("%w: container id %s: want a letter or digit, then letters, digits, '_', '.' or '-'", ErrInvalid, Quote(id))
	}
	return nil
}

// ValidateNetworkName checks the network name of a CNI configuration: the
// same characters as a container ID.
func ValidateNetworkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: network name is empty", ErrInvalid)
	}
	if len(name) > MaxNetworkNameLen {
		return fmt.Errorf("%w: network name is %d bytes, at most %d allowed", ErrInvalid, len(name), MaxNetworkNameLen)
	}
	if !isName(name) {
		return fmt.Errorf("%w: network name %s: want a letter or digit, then letters, digits, '_', '.' or '-'", ErrInvalid, Quote(name))
	}
	return nil
}

// isName reports whether s is [A-Za-z0-9][A-Za-z0-9_.-]*.
func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return s != ""
}

// ValidateIfName checks an interface name the way the kernel does (not
// empty, at most 15 bytes, not "." or "..", no '/', ':' or white space),
// and also refuses control characters and invalid UTF-8, so the name reads
// the same in the configuration tree, in JSON and in the kernel.
func ValidateIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: interface name is empty", ErrInvalid)
	case len(name) > MaxIfNameLen:
		return fmt.Errorf("%w: interface name %s is %d bytes, at most %d allowed", ErrInvalid, Quote(name), len(name), MaxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w: interface name %q is not allowed", ErrInvalid, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: interface name %s is not valid UTF-8", ErrInvalid, Quote(name))
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: interface name %s contains %q ('/', ':', white space and control characters are not allowed)", ErrInvalid, Quote(name), r)
		}
	}
	return nil
}

// Validate checks both parts of an attachment ID.
func (id AttachmentID) Validate() error {
	if err := ValidateContainerID(id.ContainerID); err != nil {
		return err
	}
	return ValidateIfName(id.IfName)
}

// Validate checks a pod's Kubernetes identity: the namespace is a DNS label
// and the name a DNS subdomain (RFC 1123), as Kubernetes requires; both may
// be empty outside Kubernetes.
func (p Pod) Validate() error {
	if p.Namespace != "" && !isDNSLabel(p.Namespace) {
		return fmt.Errorf("%w: pod namespace %s: want a DNS label (a-z, 0-9 and '-', at most %d)", ErrInvalid, Quote(p.Namespace), maxDNSLabelLen)
	}
	if p.Name != "" && (len(p.Name) > maxDNSNameLen || !isDNSName(p.Name)) {
		return fmt.Errorf("%w: pod name %s: want a DNS subdomain (labels of a-z, 0-9 and '-' joined by '.', at most %d)", ErrInvalid, Quote(p.Name), maxDNSNameLen)
	}
	return nil
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > maxDNSLabelLen || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isDNSName(s string) bool {
	for label := range strings.SplitSeq(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// maxQuoted is how much of a rejected value an error message repeats.
const maxQuoted = 64

// Quote quotes a value for an error message, cut to its first 64 bytes.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:maxQuoted], len(s))
}
