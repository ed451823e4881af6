package server

import (
	"slices"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits and defaults of STREAM subscriptions.
const (
	// minSampleInterval is the shortest sample_interval and
	// heartbeat_interval accepted; a sample_interval of 0 means it.
	minSampleInterval = 100 * time.Millisecond
	// counterSampleInterval is how often TARGET_DEFINED subscriptions
	// sample counters when the request gives no sample_interval.
	counterSampleInterval = 10 * time.Second
	// counterType is the YANG typedef of the leaves that TARGET_DEFINED
	// subscriptions sample instead of streaming on change.
	counterType = "counter64"
)

// query is a path in the telemetry cache's form: element names and list
// key values (keys in the order of their sorted names), where "*" matches
// any one string and a query matches every leaf below it.
type query []string

// matches reports whether the leaf at p is at or below q.
func (q query) matches(p []string) bool {
	if len(p) < len(q) {
		return false
	}
	for i, s := range q {
		if s != "*" && s != p[i] {
			return false
		}
	}
	return true
}

// subscription is one compiled SubscriptionList.
type subscription struct {
	mode        gpb.SubscriptionList_Mode
	target      string // reflected in the prefix of every notification
	encoding    gpb.Encoding
	updatesOnly bool
	depth       uint32 // the Depth extension's level; 0: no limit
	entries     []*subEntry
}

// subEntry is one compiled Subscription: the cache queries its path
// expands to and how to stream them.
type subEntry struct {
	path      string // as requested, for messages
	mode      gpb.SubscriptionMode
	queries   []query
	sample    time.Duration // SAMPLE interval; TARGET_DEFINED counters interval
	heartbeat time.Duration
	suppress  bool
	// counters are the counter leaves under queries, which TARGET_DEFINED
	// samples rather than streams on change.
	counters []query
	// bases are queries with the length of the schema path each came
	// from, where the Depth extension counts from.
	bases []depthBase
}

// compile checks a SubscriptionList and the request's extensions, and
// resolves its paths against the schema. Errors are InvalidArgument (or
// Unimplemented, NotFound) status errors naming the offending path.
func (s *Server) compile(list *gpb.SubscriptionList, exts []*gnmi_ext.Extension) (*subscription, error) {
	if err := s.checkTarget(list.GetPrefix()); err != nil {
		return nil, err
	}
	depth, err := depthOf(exts)
	if err != nil {
		return nil, err
	}
	sub := &subscription{
		mode:        list.GetMode(),
		target:      list.GetPrefix().GetTarget(),
		encoding:    list.GetEncoding(),
		updatesOnly: list.GetUpdatesOnly(),
		depth:       depth,
	}
	switch sub.encoding {
	case gpb.Encoding_JSON, gpb.Encoding_JSON_IETF, gpb.Encoding_PROTO:
	default:
		return nil, status.Errorf(codes.Unimplemented, "encoding %s is not supported (use JSON, JSON_IETF or PROTO)", sub.encoding)
	}
	switch sub.mode {
	case gpb.SubscriptionList_ONCE, gpb.SubscriptionList_POLL, gpb.SubscriptionList_STREAM:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown subscription list mode %d", sub.mode)
	}
	subs := list.GetSubscription()
	if len(subs) == 0 {
		// No paths: the prefix itself is the subscription.
		subs = []*gpb.Subscription{{Path: &gpb.Path{}}}
	}
	root := s.core.SchemaRoot()
	for _, gs := range subs {
		e, err := s.compileEntry(root, sub.mode, list.GetPrefix(), gs)
		if err != nil {
			return nil, err
		}
		sub.entries = append(sub.entries, e)
	}
	return sub, nil
}

// compileEntry compiles one Subscription of a list in mode lm.
func (s *Server) compileEntry(root *yang.Entry, lm gpb.SubscriptionList_Mode, prefix *gpb.Path, gs *gpb.Subscription) (*subEntry, error) {
	full, err := fullPath(prefix, gs.GetPath())
	if err != nil {
		return nil, err
	}
	e := &subEntry{
		path:      pathString(full),
		mode:      gs.GetMode(),
		sample:    time.Duration(gs.GetSampleInterval()),
		heartbeat: time.Duration(gs.GetHeartbeatInterval()),
		suppress:  gs.GetSuppressRedundant(),
	}
	bad := func(format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "%s: "+format, append([]any{e.path}, args...)...)
	}
	if lm != gpb.SubscriptionList_STREAM {
		if e.sample != 0 || e.heartbeat != 0 || e.suppress {
			return nil, bad("sample_interval, heartbeat_interval and suppress_redundant apply to STREAM subscriptions only, not %s", lm)
		}
	} else {
		switch e.mode {
		case gpb.SubscriptionMode_ON_CHANGE:
			if e.sample != 0 || e.suppress {
				return nil, bad("sample_interval and suppress_redundant apply to SAMPLE subscriptions, not ON_CHANGE")
			}
		case gpb.SubscriptionMode_SAMPLE:
			if e.sample == 0 {
				e.sample = minSampleInterval
			}
		case gpb.SubscriptionMode_TARGET_DEFINED:
			if e.suppress {
				return nil, bad("suppress_redundant applies to SAMPLE subscriptions, not TARGET_DEFINED")
			}
			if e.sample == 0 {
				e.sample = counterSampleInterval
			}
		default:
			return nil, bad("unknown subscription mode %d", e.mode)
		}
		if e.sample != 0 && e.sample < minSampleInterval {
			return nil, bad("sample_interval %s is below the minimum of %s", e.sample, minSampleInterval)
		}
		if e.heartbeat != 0 && e.heartbeat < minSampleInterval {
			return nil, bad("heartbeat_interval %s is below the minimum of %s", e.heartbeat, minSampleInterval)
		}
	}
	paths, err := expand(root, full)
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		qs, err := toQueries(root, p)
		if err != nil {
			return nil, bad("%v", err)
		}
		e.queries = append(e.queries, qs...)
		for _, q := range qs {
			e.bases = append(e.bases, depthBase{q: q, elems: len(p.GetElem())})
		}
	}
	if lm == gpb.SubscriptionList_STREAM && e.mode == gpb.SubscriptionMode_TARGET_DEFINED {
		for _, p := range paths {
			e.counters = append(e.counters, counterQueries(root, p)...)
		}
	}
	return e, nil
}

// toQueries turns a schema path whose names are all real (see expand)
// into cache queries. Missing list keys become "*". The root becomes one
// query per top-level container, so that the cache's own metadata is
// never matched.
func toQueries(root *yang.Entry, p *gpb.Path) ([]query, error) {
	if len(p.GetElem()) == 0 {
		var qs []query
		for _, name := range childNames(root) {
			q, err := toQueries(root, &gpb.Path{Elem: []*gpb.PathElem{{Name: name}}})
			if err != nil {
				return nil, err
			}
			qs = append(qs, q...)
		}
		return qs, nil
	}
	var q query
	e := root
	for _, el := range p.GetElem() {
		e = e.Dir[el.GetName()]
		if e == nil {
			// expand returned only schema paths; this is a bug.
			return nil, status.Errorf(codes.Internal, "no schema node %q", el.GetName())
		}
		q = append(q, el.GetName())
		q = appendKeys(q, e, el.GetKey())
	}
	return []query{q}, nil
}

// appendKeys appends the key values of list e, taken from keys or "*",
// in the order of their sorted names, as the cache indexes them.
func appendKeys(q query, e *yang.Entry, keys map[string]string) query {
	if !e.IsList() {
		return q
	}
	names := strings.Fields(e.Key)
	slices.Sort(names)
	for _, k := range names {
		v, ok := keys[k]
		if !ok || v == "" {
			v = "*"
		}
		q = append(q, v)
	}
	return q
}

// counterQueries returns a query for every counter leaf at or below the
// schema path p (keys of p kept, lists below it wildcarded).
func counterQueries(root *yang.Entry, p *gpb.Path) []query {
	if len(p.GetElem()) == 0 {
		// The root: look below every top-level container.
		var out []query
		for _, name := range childNames(root) {
			out = append(out, counterQueries(root, &gpb.Path{Elem: []*gpb.PathElem{{Name: name}}})...)
		}
		return out
	}
	qs, err := toQueries(root, p)
	if err != nil {
		return nil
	}
	e := root
	for _, el := range p.GetElem() {
		e = e.Dir[el.GetName()]
	}
	var out []query
	var walk func(e *yang.Entry, q query)
	walk = func(e *yang.Entry, q query) {
		if isCounter(e) {
			out = append(out, slices.Clone(q))
			return
		}
		for _, name := range childNames(e) {
			c := e.Dir[name]
			walk(c, appendKeys(append(q[:len(q):len(q)], name), c, nil))
		}
	}
	walk(e, qs[0])
	return out
}

// isCounter reports whether e is a leaf that TARGET_DEFINED samples.
func isCounter(e *yang.Entry) bool {
	return e.IsLeaf() && e.Type != nil && e.Type.Name == counterType
}
