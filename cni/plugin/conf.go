package plugin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/isthmus-net/isthmus/cni/api"
)

// Plugin-specific CNI error codes (100 and up are the plugin's to define).
const (
	// CodeUnknownNetwork: the network, or the VRF it maps to, does not exist.
	CodeUnknownNetwork uint = 100
	// CodePoolExhausted: the VRF has no free address.
	CodePoolExhausted uint = 101
)

// callTimeout bounds one call to isthmusd.
const callTimeout = 60 * time.Second

// NetConf is the plugin's network configuration.
type NetConf struct {
	types.PluginConf
	// Socket is isthmusd's CNI API socket (default api.DefaultSocket).
	Socket string `json:"socket,omitempty"`
	// MTU, when set, overrides the MTU isthmusd chooses.
	MTU int `json:"mtu,omitempty"`
}

// HostIfName is the name of the host end of a pod's veth: "ist" and 12 hex
// digits of a hash of the container ID and the pod's interface name, so DEL
// finds it without asking the daemon.
func HostIfName(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifname))
	return "ist" + hex.EncodeToString(sum[:6])
}

// aliasPrefix starts the alias of every host veth the plugin creates; the
// rest is "<network>/<container id>/<ifname>", which GC reads to find veths
// the daemon never recorded.
const aliasPrefix = "isthmus-cni:"

func hostAlias(network string, id api.AttachmentID) string {
	return aliasPrefix + network + "/" + id.ContainerID + "/" + id.IfName
}

// cniError turns an error into the CNI error the runtime sees; errors that
// already are CNI errors pass through.
func cniError(msg string, err error) error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	code := types.ErrInternal
	switch {
	case errors.Is(err, api.ErrUnknownNetwork):
		code, msg = CodeUnknownNetwork, "unknown network"
	case errors.Is(err, api.ErrPoolExhausted):
		code, msg = CodePoolExhausted, "address pool exhausted"
	case errors.Is(err, api.ErrUnavailable):
		code, msg = types.ErrTryAgainLater, "isthmusd is not running or not ready"
	case errors.Is(err, api.ErrInvalid):
		code = types.ErrInvalidNetworkConfig
	case errors.Is(err, api.ErrNoAttachment):
		code = types.ErrUnknownContainer
	}
	return types.NewError(code, msg, err.Error())
}
