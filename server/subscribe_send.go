package server

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/openconfig/gnmi/ctree"
	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/goyang/pkg/yang"
)

// Batching: a SubscribeResponse carries one notification, and a
// notification one timestamp, so leaves that changed at the same time
// (one commit, one state update, one sample) travel together, up to these
// bounds.
const (
	maxBatchUpdates = 1000
	maxBatchBytes   = 1 << 20
)

// sender builds SubscribeResponses for one subscription and sends them on
// its stream. It is owned by the goroutine that runs the subscription.
type sender struct {
	stream   gpb.GNMI_SubscribeServer
	target   string
	encoding gpb.Encoding
	root     *yang.Entry
	depth    *depthFilter // leaves deeper than the Depth extension allows are not sent; nil: no limit

	ts    int64  // timestamp of the batch being built
	items []byte // its updates and deletes, wire-encoded (see wireResponse)
	count int    // how many
	sent  int    // updates and deletes sent, for logs
}

// leaf is one leaf to send: its full path, and its value or nil for a
// delete.
type leaf struct {
	path *gpb.Path
	val  *gpb.TypedValue
}

// leaves returns the full paths and values of a cache notification.
func leaves(n *gpb.Notification, out []leaf) []leaf {
	pre := n.GetPrefix().GetElem()
	join := func(p *gpb.Path) *gpb.Path {
		if len(pre) == 0 {
			return p
		}
		return &gpb.Path{Elem: append(pre[:len(pre):len(pre)], p.GetElem()...)}
	}
	for _, u := range n.GetUpdate() {
		out = append(out, leaf{path: join(u.GetPath()), val: u.GetVal()})
	}
	for _, d := range n.GetDelete() {
		out = append(out, leaf{path: join(d)})
	}
	return out
}

// add appends one leaf at timestamp ts to the batch, sending the batch
// first when it is full or has another timestamp.
func (s *sender) add(ctx context.Context, ts int64, l leaf) error {
	if !s.depth.admits(l.path) {
		return nil
	}
	if s.count > 0 && (s.ts != ts || s.count >= maxBatchUpdates || len(s.items) >= maxBatchBytes) {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	s.ts = ts
	if l.val == nil {
		s.items = appendDelete(s.items, l.path)
		s.count++
		return nil
	}
	val, err := s.encode(l.path, l.val)
	if err != nil {
		return err
	}
	if s.items, err = appendUpdate(s.items, l.path, val); err != nil {
		return fmt.Errorf("encode %s: %w", pathString(l.path), err)
	}
	s.count++
	return nil
}

// addEncoded is add for a leaf already in wire form: elems are its
// path's Path.elem fields, val the body of its TypedValue, already in the
// subscription's encoding, or nil for a delete. The caller has applied
// the depth filter.
func (s *sender) addEncoded(ctx context.Context, ts int64, elems, val []byte) error {
	if s.count > 0 && (s.ts != ts || s.count >= maxBatchUpdates || len(s.items) >= maxBatchBytes) {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	s.ts = ts
	if val == nil {
		s.items = appendLenHeader(s.items, fieldNotifDelete, len(elems))
		s.items = append(s.items, elems...)
	} else {
		s.items = appendLenHeader(s.items, fieldNotifUpdate, lenField(fieldUpdatePath, len(elems))+lenField(fieldUpdateVal, len(val)))
		s.items = appendLenHeader(s.items, fieldUpdatePath, len(elems))
		s.items = append(s.items, elems...)
		s.items = appendLenHeader(s.items, fieldUpdateVal, len(val))
		s.items = append(s.items, val...)
	}
	s.count++
	return nil
}

// addNotification adds every leaf of a cache notification.
func (s *sender) addNotification(ctx context.Context, ts int64, n *gpb.Notification, buf []leaf) ([]leaf, error) {
	buf = leaves(n, buf[:0])
	for _, l := range buf {
		if err := s.add(ctx, ts, l); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// flush sends the batch, if any.
func (s *sender) flush(ctx context.Context) error {
	if s.count == 0 {
		return nil
	}
	resp := wireResponse(s.ts, s.target, s.items)
	s.sent += s.count
	s.items, s.count = s.items[:0], 0
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.stream.Send(resp)
}

// syncResponse flushes the batch and sends sync_response.
func (s *sender) syncResponse(ctx context.Context) error {
	if err := s.flush(ctx); err != nil {
		return err
	}
	return s.stream.Send(&gpb.SubscribeResponse{Response: &gpb.SubscribeResponse_SyncResponse{SyncResponse: true}})
}

// encode returns v in the subscription's encoding. The cache holds scalar
// TypedValues, which PROTO sends as they are; JSON and JSON_IETF send each
// leaf as a JSON scalar, using the leaf's schema for RFC 7951's rules
// (64-bit integers and decimal64 as strings, empty as [null]).
func (s *sender) encode(p *gpb.Path, v *gpb.TypedValue) (*gpb.TypedValue, error) {
	switch s.encoding {
	case gpb.Encoding_JSON, gpb.Encoding_JSON_IETF:
	default:
		return v, nil
	}
	ietf := s.encoding == gpb.Encoding_JSON_IETF
	var kind yang.TypeKind
	if e := schemaLeaf(s.root, p); e != nil && e.Type != nil {
		kind = e.Type.Kind
	}
	b, err := appendJSON(nil, v, kind, ietf)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", pathString(p), err)
	}
	if ietf {
		return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: b}}, nil
	}
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonVal{JsonVal: b}}, nil
}

// schemaLeaf returns the schema entry of the leaf at p, or nil.
func schemaLeaf(root *yang.Entry, p *gpb.Path) *yang.Entry {
	e := root
	for _, el := range p.GetElem() {
		if e = e.Dir[el.GetName()]; e == nil {
			return nil
		}
	}
	return e
}

// appendJSON appends v as JSON. kind is the leaf's YANG type (0 when
// unknown); ietf applies RFC 7951.
func appendJSON(b []byte, v *gpb.TypedValue, kind yang.TypeKind, ietf bool) ([]byte, error) {
	quoteNum := ietf && (kind == yang.Yint64 || kind == yang.Yuint64 || kind == yang.Ydecimal64)
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return appendString(b, x.StringVal)
	case *gpb.TypedValue_BoolVal:
		if ietf && kind == yang.Yempty {
			return append(b, "[null]"...), nil
		}
		return strconv.AppendBool(b, x.BoolVal), nil
	case *gpb.TypedValue_UintVal:
		return appendNum(b, strconv.AppendUint(nil, x.UintVal, 10), quoteNum), nil
	case *gpb.TypedValue_IntVal:
		return appendNum(b, strconv.AppendInt(nil, x.IntVal, 10), quoteNum), nil
	case *gpb.TypedValue_DoubleVal:
		return appendFloat(b, x.DoubleVal, quoteNum)
	case *gpb.TypedValue_FloatVal: //nolint:staticcheck // older senders still use it
		return appendFloat(b, float64(x.FloatVal), quoteNum)
	case *gpb.TypedValue_DecimalVal: //nolint:staticcheck // older senders still use it
		d := x.DecimalVal
		f := float64(d.GetDigits()) / math.Pow10(int(d.GetPrecision()))
		return appendNum(b, strconv.AppendFloat(nil, f, 'f', int(d.GetPrecision()), 64), ietf), nil
	case *gpb.TypedValue_BytesVal:
		return appendString(b, base64.StdEncoding.EncodeToString(x.BytesVal))
	case *gpb.TypedValue_LeaflistVal:
		b = append(b, '[')
		for i, e := range x.LeaflistVal.GetElement() {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e, kind, ietf); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case *gpb.TypedValue_JsonIetfVal:
		return append(b, x.JsonIetfVal...), nil
	case *gpb.TypedValue_JsonVal:
		return append(b, x.JsonVal...), nil
	case *gpb.TypedValue_AsciiVal:
		return appendString(b, x.AsciiVal)
	default:
		return nil, fmt.Errorf("value of type %T has no JSON form", x)
	}
}

func appendString(b []byte, s string) ([]byte, error) {
	js, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return append(b, js...), nil
}

func appendNum(b, num []byte, quote bool) []byte {
	if quote {
		b = append(b, '"')
		b = append(b, num...)
		return append(b, '"')
	}
	return append(b, num...)
}

func appendFloat(b []byte, f float64, quote bool) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("%v has no JSON form", f)
	}
	return appendNum(b, strconv.AppendFloat(nil, f, 'g', -1, 64), quote), nil
}

// collect appends the cache notifications of every leaf under qs but not
// under exclude, oldest first. It copies them out before anything is
// sent, so that a slow client never holds the cache's locks.
func (s *Server) collect(qs, exclude []query, out []*gpb.Notification) ([]*gpb.Notification, error) {
	c := s.core.Cache()
	start := len(out)
	for _, q := range qs {
		err := c.Query(s.core.Target(), q, func(p []string, _ *ctree.Leaf, v any) error {
			for _, x := range exclude {
				if x.matches(p) {
					return nil
				}
			}
			if n, ok := v.(*gpb.Notification); ok {
				out = append(out, n)
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("query telemetry cache: %w", err)
		}
	}
	// Oldest first, and leaves of one commit together in one batch.
	slices.SortStableFunc(out[start:], func(a, b *gpb.Notification) int { return cmp.Compare(a.GetTimestamp(), b.GetTimestamp()) })
	return out, nil
}
