package server

import (
	"fmt"
	"testing"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
)

// BenchmarkSetVRF measures the latency of a gNMI Set that adds or removes
// one L3VRF (with RD, RTs and a pool) over TLS with a password: gRPC,
// authentication, validation, commit and persistence, with 1 and with
// 1,000 other VRFs configured. Even iterations add the VRF, odd ones
// delete it, so the configuration stays one size.
func BenchmarkSetVRF(b *testing.B) {
	for _, others := range []int{1, 1000} {
		b.Run(fmt.Sprintf("vrfs=%d", others), func(b *testing.B) {
			e := newTestEnv(b)
			e.addVRFs(b, others)
			add := &gpb.SetRequest{Update: []*gpb.Update{upd(b, vrfPath("bench"), ietf(vrfJSON("bench", "65001:99", "172.16.0.0/24")))}}
			del := &gpb.SetRequest{Delete: []*gpb.Path{mustPath(b, vrfPath("bench"))}}
			ctx := admin()
			for i := 0; b.Loop(); i++ {
				req := add
				if i%2 == 1 {
					req = del
				}
				if _, err := e.cli.Set(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// addVRFs commits n VRFs in one Set.
func (e *testEnv) addVRFs(b *testing.B, n int) {
	b.Helper()
	req := &gpb.SetRequest{}
	for i := range n {
		name := fmt.Sprintf("vrf%d", i)
		req.Update = append(req.Update, upd(b, vrfPath(name), ietf(vrfJSON(name, fmt.Sprintf("65000:%d", i+1), fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)))))
	}
	if _, err := e.cli.Set(admin(), req); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGet1000VRFs measures a Get of /network-instances holding 1,000
// VRFs, in each encoding and data type.
func BenchmarkGet1000VRFs(b *testing.B) {
	e := newTestEnv(b)
	e.addVRFs(b, 1000)
	for _, c := range []struct {
		typ gpb.GetRequest_DataType
		enc gpb.Encoding
	}{
		{gpb.GetRequest_CONFIG, gpb.Encoding_JSON_IETF},
		{gpb.GetRequest_CONFIG, gpb.Encoding_JSON},
		{gpb.GetRequest_CONFIG, gpb.Encoding_PROTO},
		{gpb.GetRequest_ALL, gpb.Encoding_JSON_IETF},
	} {
		b.Run(fmt.Sprintf("%s/%s", c.typ, c.enc), func(b *testing.B) {
			get := &gpb.GetRequest{Type: c.typ, Encoding: c.enc, Path: []*gpb.Path{mustPath(b, "/network-instances")}}
			ctx := viewer()
			for b.Loop() {
				resp, err := e.cli.Get(ctx, get)
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.GetNotification()[0].GetUpdate()) == 0 {
					b.Fatal("empty response")
				}
			}
		})
	}
}
