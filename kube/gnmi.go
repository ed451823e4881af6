package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/ygot/ygot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/isthmus-net/isthmus/gen"
	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// ownerMark starts the description of every VRF and BGP neighbor the
// controller made: what carries it is the controller's to change or
// delete, and nothing else on the node is.
const ownerMark = "isthmus-controller"

type (
	niT       = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance
	nisT      = gen.IsthmusNetworkInstance_NetworkInstances
	neighborT = gen.IsthmusNetworkInstance_NetworkInstances_NetworkInstance_Protocols_Protocol_Bgp_Neighbors_Neighbor
)

// dialOptions turns the gNMI client settings into gRPC options.
func dialOptions(c GNMIConfig) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if c.Plaintext {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		tc := &tls.Config{InsecureSkipVerify: c.SkipVerify, MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read gnmi ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("read gnmi ca %s: no certificate in it", c.CAFile)
			}
		}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load gnmi client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	if c.Username != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(password{user: c.Username, pass: c.Password, tls: !c.Plaintext}))
	}
	return opts, nil
}

// password sends isthmusd's username and password metadata on every RPC.
type password struct {
	user, pass string
	tls        bool
}

func (p password) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"username": p.user, "password": p.pass}, nil
}

func (p password) RequireTransportSecurity() bool { return p.tls }

// nodeConfig is the controller-owned part of a node's configuration as read
// back from it, plus what the controller must know of the rest.
type nodeConfig struct {
	vrfs      map[string]vrfIntent
	neighbors map[netip.Addr]uint32 // owned neighbors → peer AS
	// bgpProtocol is the name of the default instance's BGP protocol, ""
	// when the node runs no BGP (its startup config sets AS and router id).
	bgpProtocol string
}

var niPath = mustPath("/network-instances")

func mustPath(s string) *gpb.Path {
	p, err := ygot.StringToStructuredPath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// readNode reads the node's network instances and picks out what the
// controller owns.
func readNode(ctx context.Context, c gpb.GNMIClient) (nodeConfig, error) {
	nc := nodeConfig{vrfs: map[string]vrfIntent{}, neighbors: map[netip.Addr]uint32{}}
	resp, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{niPath}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
	if status.Code(err) == codes.NotFound {
		return nc, nil
	}
	if err != nil {
		return nc, fmt.Errorf("get network instances: %w", err)
	}
	var js []byte
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			js = u.GetVal().GetJsonIetfVal()
		}
	}
	if len(js) == 0 {
		return nc, nil
	}
	var nis nisT
	if err := gen.Unmarshal(js, &nis); err != nil {
		return nc, fmt.Errorf("parse network instances: %w", err)
	}
	for name, ni := range nis.NetworkInstance {
		cf := ni.GetConfig()
		if cf.GetType() == gen.IsthmusTypes_NetworkInstanceType_L3VRF {
			if d := cf.GetDescription(); strings.HasPrefix(d, ownerMark) {
				nc.vrfs[name] = vrfFromTree(ni)
			}
			continue
		}
		if ni.Protocols == nil {
			continue
		}
		for key, p := range ni.Protocols.Protocol {
			if key.Identifier != gen.IsthmusTypes_ProtocolType_BGP || p.GetBgp() == nil || name != "default" {
				continue
			}
			nc.bgpProtocol = key.Name
			if p.GetBgp().Neighbors == nil {
				continue
			}
			for addr, n := range p.GetBgp().Neighbors.Neighbor {
				if !strings.HasPrefix(n.GetConfig().GetDescription(), ownerMark) {
					continue
				}
				if a, err := netip.ParseAddr(addr); err == nil {
					nc.neighbors[a] = n.GetConfig().GetPeerAs()
				}
			}
		}
	}
	return nc, nil
}

func vrfFromTree(ni *niT) vrfIntent {
	cf := ni.GetConfig()
	v := vrfIntent{
		network: strings.TrimPrefix(strings.TrimPrefix(cf.GetDescription(), ownerMark), ": network "),
		rd:      cf.GetRouteDistinguisher(),
		imports: sortedSet(cf.ImportRouteTarget),
		exports: sortedSet(cf.ExportRouteTarget),
		encap:   v1alpha1.MPLSOverUDP,
	}
	if cf.GetEncapsulation() == gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS {
		v.encap = v1alpha1.MPLSOverMPLS
	}
	if ni.AddressPools != nil {
		for prefix := range ni.AddressPools.AddressPool {
			v.pools = append(v.pools, prefix)
		}
		sort.Strings(v.pools)
	}
	return v
}

// vrfTree renders one VRF as the tree isthmusd stores.
func vrfTree(name string, v vrfIntent) *niT {
	ni := &niT{Name: ygot.String(name)}
	cf := ni.GetOrCreateConfig()
	cf.Name = ygot.String(name)
	cf.Type = gen.IsthmusTypes_NetworkInstanceType_L3VRF
	cf.Description = ygot.String(ownerMark + ": network " + v.network)
	cf.RouteDistinguisher = ygot.String(v.rd)
	cf.ImportRouteTarget = slices.Clone(v.imports)
	cf.ExportRouteTarget = slices.Clone(v.exports)
	cf.Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_UDP
	if v.encap == v1alpha1.MPLSOverMPLS {
		cf.Encapsulation = gen.IsthmusTypes_Encapsulation_MPLS_OVER_MPLS
	}
	for _, p := range v.pools {
		ap := ni.GetOrCreateAddressPools().GetOrCreateAddressPool(p)
		ap.GetOrCreateConfig().Prefix = ygot.String(p)
	}
	return ni
}

func neighborTree(addr netip.Addr, peerAS uint32) *neighborT {
	n := &neighborT{NeighborAddress: ygot.String(addr.String())}
	cf := n.GetOrCreateConfig()
	cf.NeighborAddress = ygot.String(addr.String())
	cf.PeerAs = ygot.Uint32(peerAS)
	cf.Description = ygot.String(ownerMark + ": route reflector")
	af := n.GetOrCreateAfiSafis().GetOrCreateAfiSafi(gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST)
	af.GetOrCreateConfig().AfiSafiName = gen.IsthmusTypes_AfiSafiType_L3VPN_IPV4_UNICAST
	af.GetOrCreateConfig().Enabled = ygot.Bool(true)
	return n
}

func vrfPath(name string) *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{
		{Name: "network-instances"},
		{Name: "network-instance", Key: map[string]string{"name": name}},
	}}
}

func neighborPath(protocol string, addr netip.Addr) *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{
		{Name: "network-instances"},
		{Name: "network-instance", Key: map[string]string{"name": "default"}},
		{Name: "protocols"},
		{Name: "protocol", Key: map[string]string{"identifier": "BGP", "name": protocol}},
		{Name: "bgp"},
		{Name: "neighbors"},
		{Name: "neighbor", Key: map[string]string{"neighbor-address": addr.String()}},
	}}
}

func jsonVal(s ygot.GoStruct) (*gpb.TypedValue, error) {
	js, err := ygot.Marshal7951(s, &ygot.RFC7951JSONConfig{AppendModuleName: true})
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", s, err)
	}
	return &gpb.TypedValue{Value: &gpb.TypedValue_JsonIetfVal{JsonIetfVal: js}}, nil
}

// errNoBGP says the node runs no BGP yet, so its route-reflector neighbors
// wait (the VRFs do not).
var errNoBGP = errors.New("node has no BGP as and router id (its startup config sets them)")

// maxOpsPerSet bounds one SetRequest: a node far behind (just started, or
// back after a long absence) is brought up in several transactions of at
// most this many VRFs or neighbors each, so no single Set outlasts the RPC
// timeout on a busy node. Each VRF is replaced whole in one of them: no
// node ever holds half of a network.
const maxOpsPerSet = 64

// setRequest is the next transaction towards want from have: the deletes
// first, then the VRFs and neighbors that differ, at most maxOpsPerSet of
// them. It returns nil when nothing differs, and what the node holds once
// the request succeeded.
func setRequest(have nodeConfig, want nodeIntent) (*gpb.SetRequest, nodeConfig, error) {
	req := &gpb.SetRequest{}
	next := nodeConfig{vrfs: make(map[string]vrfIntent, len(want.vrfs)), neighbors: map[netip.Addr]uint32{}, bgpProtocol: have.bgpProtocol}
	for name, v := range have.vrfs {
		next.vrfs[name] = v
	}
	for a, as := range have.neighbors {
		next.neighbors[a] = as
	}
	full := func() bool { return len(req.Delete)+len(req.Replace) >= maxOpsPerSet }
	for _, name := range sortedKeys(have.vrfs) {
		if _, ok := want.vrfs[name]; !ok && !full() {
			req.Delete = append(req.Delete, vrfPath(name))
			delete(next.vrfs, name)
		}
	}
	for _, name := range sortedKeys(want.vrfs) {
		v := want.vrfs[name]
		if h, ok := have.vrfs[name]; (ok && h.equal(v)) || full() {
			continue
		}
		val, err := jsonVal(vrfTree(name, v))
		if err != nil {
			return nil, have, err
		}
		req.Replace = append(req.Replace, &gpb.Update{Path: vrfPath(name), Val: val})
		next.vrfs[name] = v
	}
	if have.bgpProtocol != "" {
		for addr := range have.neighbors {
			if !slices.Contains(want.neighbors, addr) && !full() {
				req.Delete = append(req.Delete, neighborPath(have.bgpProtocol, addr))
				delete(next.neighbors, addr)
			}
		}
		for _, addr := range want.neighbors {
			if as, ok := have.neighbors[addr]; (ok && as == want.peerAS) || full() {
				continue
			}
			val, err := jsonVal(neighborTree(addr, want.peerAS))
			if err != nil {
				return nil, have, err
			}
			req.Replace = append(req.Replace, &gpb.Update{Path: neighborPath(have.bgpProtocol, addr), Val: val})
			next.neighbors[addr] = want.peerAS
		}
	}
	if len(req.Delete) == 0 && len(req.Replace) == 0 {
		return nil, have, nil
	}
	return req, next, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
