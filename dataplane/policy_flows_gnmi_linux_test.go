package dataplane

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/isthmus-net/isthmus/nos"
	"github.com/isthmus-net/isthmus/server"
)

// getState serves core over gNMI on a unix socket (namespace-free) and
// returns the leaves a Get of state at path answers, by path (encoded as
// PROTO, or JSON_IETF with json: then the one value under the path).
func getState(t *testing.T, core *nos.Core, path string, json ...bool) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	srv := server.New(core, server.WithLogger(quiet), server.WithSecurity(server.SecurityConfig{Insecure: true}), server.WithDataDir(dir))
	sock := filepath.Join(dir, "gnmi.sock")
	lis, err := net.Listen("unix", sock)
	must(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	defer func() { cancel(); <-served }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer conn.Close()
	p, err := ygot.StringToStructuredPath(path)
	must(t, err)
	enc := gpb.Encoding_PROTO
	if len(json) > 0 && json[0] {
		enc = gpb.Encoding_JSON_IETF
	}
	resp, err := gpb.NewGNMIClient(conn).Get(ctx, &gpb.GetRequest{Type: gpb.GetRequest_STATE, Encoding: enc, Path: []*gpb.Path{p}})
	if err != nil {
		t.Fatalf("get %s: %v", path, err)
	}
	out := map[string]string{}
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			s, err := ygot.PathToString(&gpb.Path{Elem: append(append([]*gpb.PathElem{}, n.GetPrefix().GetElem()...), u.GetPath().GetElem()...)})
			must(t, err)
			out[s] = valueString(u.GetVal())
		}
	}
	return out
}

// aclFlowLeaves picks from a Get of acl-flows the leaves of the flows
// whose key holds every one of the given key terms ("protocol=6",
// "destination-port=7"), by leaf name; the values of a leaf-list are
// joined.
func aclFlowLeaves(got map[string]string, terms ...string) map[string][]string {
	out := map[string][]string{}
next:
	for p, v := range got {
		for _, term := range terms {
			if !strings.Contains(p, "["+term+"]") {
				continue next
			}
		}
		leaf := p[strings.LastIndex(p, "/")+1:]
		out[leaf] = append(out[leaf], v)
	}
	return out
}

// valueString is a gNMI scalar or leaf-list value as text (leaf-list
// elements joined by ",").
func valueString(v *gpb.TypedValue) string {
	switch x := v.GetValue().(type) {
	case *gpb.TypedValue_StringVal:
		return x.StringVal
	case *gpb.TypedValue_UintVal:
		return fmt.Sprint(x.UintVal)
	case *gpb.TypedValue_IntVal:
		return fmt.Sprint(x.IntVal)
	case *gpb.TypedValue_JsonIetfVal:
		return string(x.JsonIetfVal)
	case *gpb.TypedValue_BoolVal:
		return fmt.Sprint(x.BoolVal)
	case *gpb.TypedValue_LeaflistVal:
		var parts []string
		for _, e := range x.LeaflistVal.GetElement() {
			parts = append(parts, valueString(e))
		}
		return strings.Join(parts, ",")
	}
	return v.String()
}
