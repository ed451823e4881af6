package nos

import (
	"errors"
	"fmt"
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
	return &PathError{Path: path, Err: fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))}
}

// notFoundf returns a PathError wrapping ErrNotFound.
func notFoundf(path, format string, args ...any) error {
	return &PathError{Path: path, Err: fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))}
}
