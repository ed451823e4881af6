package server

import (
	"fmt"
	"math"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Subscribe encodes its notifications itself, straight into protobuf wire
// format: the generic marshaller goes through reflection for the key maps
// of path elements and costs several times more than the rest of the
// subscription. The bytes are sent as a SubscribeResponse whose only
// content is those bytes (as unknown fields), which the marshaller emits
// unchanged, so the client receives an ordinary SubscribeResponse.
//
// Field numbers of gnmi.proto used below.
const (
	fieldResponseUpdate = 1 // SubscribeResponse.update

	fieldNotifTimestamp = 1 // Notification.timestamp
	fieldNotifPrefix    = 2 // Notification.prefix
	fieldNotifUpdate    = 4 // Notification.update
	fieldNotifDelete    = 5 // Notification.delete

	fieldUpdatePath = 1 // Update.path
	fieldUpdateVal  = 3 // Update.val

	fieldPathElement = 1 // Path.element (deprecated)
	fieldPathOrigin  = 2 // Path.origin
	fieldPathElem    = 3 // Path.elem
	fieldPathTarget  = 4 // Path.target

	fieldElemName = 1 // PathElem.name
	fieldElemKey  = 2 // PathElem.key (map entries: key 1, value 2)

	fieldValString   = 1  // TypedValue.string_val
	fieldValInt      = 2  // TypedValue.int_val
	fieldValUint     = 3  // TypedValue.uint_val
	fieldValBool     = 4  // TypedValue.bool_val
	fieldValBytes    = 5  // TypedValue.bytes_val
	fieldValJSON     = 10 // TypedValue.json_val
	fieldValJSONIETF = 11 // TypedValue.json_ietf_val
	fieldValDouble   = 14 // TypedValue.double_val
)

// lenField is the size of a length-delimited field of n bytes.
func lenField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendLenHeader(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func elemSize(e *gpb.PathElem) int {
	n := 0
	if e.GetName() != "" {
		n += lenField(fieldElemName, len(e.GetName()))
	}
	for k, v := range e.GetKey() {
		n += lenField(fieldElemKey, lenField(1, len(k))+lenField(2, len(v)))
	}
	return n
}

// pathSize is the encoded size of p; it fills sizes (when long enough)
// with the sizes of p's elements, for appendPath.
func pathSize(p *gpb.Path, sizes []int) int {
	n := 0
	for _, s := range p.GetElement() {
		n += lenField(fieldPathElement, len(s))
	}
	if o := p.GetOrigin(); o != "" {
		n += lenField(fieldPathOrigin, len(o))
	}
	for i, e := range p.GetElem() {
		es := elemSize(e)
		if i < len(sizes) {
			sizes[i] = es
		}
		n += lenField(fieldPathElem, es)
	}
	if t := p.GetTarget(); t != "" {
		n += lenField(fieldPathTarget, len(t))
	}
	return n
}

// maxSizedElems is how many element sizes appendPath remembers between
// sizing and writing a path; deeper elements are sized twice.
const maxSizedElems = 16

// appendPath appends p, of size size, as field num; sizes are its
// elements' sizes as pathSize returned them.
func appendPath(b []byte, num protowire.Number, p *gpb.Path, size int, sizes []int) []byte {
	b = appendLenHeader(b, num, size)
	for _, s := range p.GetElement() {
		b = appendStringField(b, fieldPathElement, s)
	}
	if o := p.GetOrigin(); o != "" {
		b = appendStringField(b, fieldPathOrigin, o)
	}
	for i, e := range p.GetElem() {
		var es int
		if i < len(sizes) {
			es = sizes[i]
		} else {
			es = elemSize(e)
		}
		b = appendLenHeader(b, fieldPathElem, es)
		if e.GetName() != "" {
			b = appendStringField(b, fieldElemName, e.GetName())
		}
		for k, v := range e.GetKey() {
			b = appendLenHeader(b, fieldElemKey, lenField(1, len(k))+lenField(2, len(v)))
			b = appendStringField(b, 1, k)
			b = appendStringField(b, 2, v)
		}
	}
	if t := p.GetTarget(); t != "" {
		b = appendStringField(b, fieldPathTarget, t)
	}
	return b
}

// appendDelete appends p as Notification.delete.
func appendDelete(b []byte, p *gpb.Path) []byte {
	var sizes [maxSizedElems]int
	return appendPath(b, fieldNotifDelete, p, pathSize(p, sizes[:]), sizes[:])
}

// valueSize is the encoded size of v.
func valueSize(v *gpb.TypedValue) int {
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return lenField(fieldValString, len(x.StringVal))
	case *gpb.TypedValue_UintVal:
		return protowire.SizeTag(fieldValUint) + protowire.SizeVarint(x.UintVal)
	case *gpb.TypedValue_IntVal:
		return protowire.SizeTag(fieldValInt) + protowire.SizeVarint(uint64(x.IntVal))
	case *gpb.TypedValue_BoolVal:
		return protowire.SizeTag(fieldValBool) + 1
	case *gpb.TypedValue_DoubleVal:
		return protowire.SizeTag(fieldValDouble) + 8
	case *gpb.TypedValue_BytesVal:
		return lenField(fieldValBytes, len(x.BytesVal))
	case *gpb.TypedValue_JsonVal:
		return lenField(fieldValJSON, len(x.JsonVal))
	case *gpb.TypedValue_JsonIetfVal:
		return lenField(fieldValJSONIETF, len(x.JsonIetfVal))
	}
	return proto.Size(v)
}

// appendValue appends the body of v, of size valueSize(v). Common scalars
// are encoded here, the rest by the generic marshaller.
func appendValue(b []byte, v *gpb.TypedValue) ([]byte, error) {
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return appendStringField(b, fieldValString, x.StringVal), nil
	case *gpb.TypedValue_UintVal:
		b = protowire.AppendTag(b, fieldValUint, protowire.VarintType)
		return protowire.AppendVarint(b, x.UintVal), nil
	case *gpb.TypedValue_IntVal:
		b = protowire.AppendTag(b, fieldValInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(x.IntVal)), nil
	case *gpb.TypedValue_BoolVal:
		b = protowire.AppendTag(b, fieldValBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(x.BoolVal)), nil
	case *gpb.TypedValue_DoubleVal:
		b = protowire.AppendTag(b, fieldValDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(x.DoubleVal)), nil
	case *gpb.TypedValue_BytesVal:
		b = protowire.AppendTag(b, fieldValBytes, protowire.BytesType)
		return protowire.AppendBytes(b, x.BytesVal), nil
	case *gpb.TypedValue_JsonVal:
		b = protowire.AppendTag(b, fieldValJSON, protowire.BytesType)
		return protowire.AppendBytes(b, x.JsonVal), nil
	case *gpb.TypedValue_JsonIetfVal:
		b = protowire.AppendTag(b, fieldValJSONIETF, protowire.BytesType)
		return protowire.AppendBytes(b, x.JsonIetfVal), nil
	}
	b, err := proto.MarshalOptions{}.MarshalAppend(b, v)
	if err != nil {
		return nil, fmt.Errorf("encode value: %w", err)
	}
	return b, nil
}

// appendUpdate appends an Update of p and val as Notification.update.
func appendUpdate(b []byte, p *gpb.Path, val *gpb.TypedValue) ([]byte, error) {
	var sizes [maxSizedElems]int
	psize, vsize := pathSize(p, sizes[:]), valueSize(val)
	b = appendLenHeader(b, fieldNotifUpdate, lenField(fieldUpdatePath, psize)+lenField(fieldUpdateVal, vsize))
	b = appendPath(b, fieldUpdatePath, p, psize, sizes[:])
	b = appendLenHeader(b, fieldUpdateVal, vsize)
	return appendValue(b, val)
}

// wireResponse wraps the body of a notification (its updates and deletes)
// into a SubscribeResponse with timestamp ts and a prefix naming target.
func wireResponse(ts int64, target string, items []byte) *gpb.SubscribeResponse {
	prefix := 0
	if target != "" {
		prefix = lenField(fieldNotifPrefix, lenField(fieldPathTarget, len(target)))
	}
	body := protowire.SizeTag(fieldNotifTimestamp) + protowire.SizeVarint(uint64(ts)) + prefix + len(items)
	b := make([]byte, 0, lenField(fieldResponseUpdate, body))
	b = appendLenHeader(b, fieldResponseUpdate, body)
	b = protowire.AppendTag(b, fieldNotifTimestamp, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(ts))
	if target != "" {
		b = appendLenHeader(b, fieldNotifPrefix, lenField(fieldPathTarget, len(target)))
		b = appendStringField(b, fieldPathTarget, target)
	}
	b = append(b, items...)
	resp := &gpb.SubscribeResponse{}
	resp.ProtoReflect().SetUnknown(b)
	return resp
}
