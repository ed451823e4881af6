package server

import (
	"context"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/proto"

	"github.com/isthmus-net/isthmus/gen"
)

// gnmiVersion is the gNMI specification version the generated protocol
// package declares.
var gnmiVersion = func() string {
	v, _ := proto.GetExtension(gpb.File_github_com_openconfig_gnmi_proto_gnmi_gnmi_proto.Options(), gpb.E_GnmiService).(string)
	return v
}()

// supportedEncodings are the encodings Get accepts.
var supportedEncodings = []gpb.Encoding{gpb.Encoding_JSON, gpb.Encoding_JSON_IETF, gpb.Encoding_PROTO}

// Capabilities returns the YANG models the server serves, with their
// organizations and versions, the encodings it accepts and the gNMI
// version. The Depth extension is InvalidArgument here.
func (s *Server) Capabilities(ctx context.Context, req *gpb.CapabilityRequest) (*gpb.CapabilityResponse, error) {
	if err := refuseDepth("Capabilities", req.GetExtension()); err != nil {
		return nil, err
	}
	models := make([]*gpb.ModelData, 0, len(gen.ΓModelData))
	for _, m := range gen.ΓModelData {
		models = append(models, proto.Clone(m).(*gpb.ModelData))
	}
	return &gpb.CapabilityResponse{
		SupportedModels:    models,
		SupportedEncodings: supportedEncodings,
		GNMIVersion:        gnmiVersion,
	}, nil
}
