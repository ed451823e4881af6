package nos

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/openconfig/ygot/util"
)

// Sentinel errors a caller can test with errors.Is. The gNMI server maps
// them to status codes; the CNI API to CNI error codes.
var (
	// ErrInvalid marks a request or configuration that breaks the schema or
	// a semantic rule.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound marks a reference or a deletion target that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrReconcile marks a commit that a reconciler could not apply; the
	// previous configuration stays in place.
	ErrReconcile = errors.New("reconcile failed")
	// ErrNotStarted marks a commit asked of a core that has not started,
	// or whose start failed.
	ErrNotStarted = errors.New("the configuration core is not running")
)

// ErrNoConfig marks a state write for a list entry (a VRF, an interface,
// a neighbor) that is not in the configuration: state outlives no entry.
// It is an ErrNotFound.
var ErrNoConfig = fmt.Errorf("no such configured entry: %w", ErrNotFound)

// PathError is an error about one schema path.
type PathError struct {
	Path string // gNMI path in string form, e.g. /network-instances/network-instance[name=red]/config/route-distinguisher
	Err  error
}

// Error returns "path: reason".
func (e *PathError) Error() string { return e.Path + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *PathError) Unwrap() error { return e.Err }

// invalidf returns a PathError wrapping ErrInvalid.
func invalidf(path, format string, args ...any) error {
	return &PathError{Path: clipKeys(path), Err: fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))}
}

// longKey matches a list key value of more than 100 bytes in a path.
var longKey = regexp.MustCompile(`=([^\]]{100})[^\]]+\]`)

// clipKeys shortens the long key values of a rendered path, so that a
// message never echoes a whole bad value.
func clipKeys(path string) string {
	if len(path) < 100 {
		return path
	}
	return longKey.ReplaceAllString(path, "=$1…]")
}

// schemaProblem turns an error from ygot's decoding or validation into a
// reason a user can read: ygot names Go types and its own schema paths
// (/device/...), which mean nothing to a gNMI client. The leaf's name and
// ygot's reason are kept when they are clean, and echoed values clipped.
func schemaProblem(err error) string {
	var errs util.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		err = errs[0]
	}
	msg := rpcPrefix.ReplaceAllString(err.Error(), "")
	if i := strings.LastIndex(msg, `schema "`); i >= 0 {
		msg = msg[i+len(`schema "`):]
		if name, reason, ok := strings.Cut(msg, `": `); ok {
			msg = name + ": " + reason
		}
	}
	if j := strings.LastIndex(msg, "; "); j >= 0 && goInternals.MatchString(msg[:j]) {
		msg = msg[j+2:]
	}
	if goInternals.MatchString(msg) {
		return "the value does not fit the schema"
	}
	return clip(msg)
}

var (
	rpcPrefix   = regexp.MustCompile(`rpc error: code = \w+ desc = `)
	goInternals = regexp.MustCompile(`\*?\b(gen|gnmi|ytypes|ygot|yang|reflect|util)\.[A-Za-z_]|/device/|\bstruct\b|StringToType|unmarshal|interface \{\}|map\[|elem:\{|json_ietf_val|_val:`)
)
