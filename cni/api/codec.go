package api

import (
	"encoding/json"
	"fmt"
)

// Codec is the gRPC codec of this API: messages are the structs of this
// package encoded as JSON.
type Codec struct{}

// Marshal encodes v as JSON.
func (Codec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}

// Unmarshal decodes JSON data into v.
func (Codec) Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	return nil
}

// Name is the content subtype of the codec ("application/grpc+json").
func (Codec) Name() string { return "json" }
