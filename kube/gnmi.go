package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
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
	nssT      = gen.IsthmusCni_Cni_Namespaces
	nsT       = gen.IsthmusCni_Cni_Namespaces_Namespace
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
	// namespaces are the owned /cni/namespaces entries (those mapping to
	// an owned VRF): Kubernetes namespace → VRF.
	namespaces map[string]string
	// bgpProtocol is the name of the default instance's BGP protocol, ""
	// when the node runs no BGP (its startup config sets AS and router id).
	bgpProtocol string
}

var (
	niPath  = mustPath("/network-instances")
	cniPath = mustPath("/cni/namespaces")
)

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
	nc := nodeConfig{vrfs: map[string]vrfIntent{}, neighbors: map[netip.Addr]uint32{}, namespaces: map[string]string{}}
	var nis nisT
	if err := getConfig(ctx, c, niPath, &nis); err != nil {
		return nc, fmt.Errorf("get network instances: %w", err)
	}
	var nss nssT
	if err := getConfig(ctx, c, cniPath, &nss); err != nil {
		return nc, fmt.Errorf("get cni namespaces: %w", err)
	}
	defer func() {
		for name, ns := range nss.Namespace {
			if vrf := ns.GetConfig().GetNetworkInstance(); nc.vrfs[vrf].network != "" {
				nc.namespaces[name] = vrf
			}
		}
	}()
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

// getConfig reads the configuration subtree at p into s (left empty when
// the node has none).
func getConfig(ctx context.Context, c gpb.GNMIClient, p *gpb.Path, s ygot.GoStruct) error {
	resp, err := c.Get(ctx, &gpb.GetRequest{Path: []*gpb.Path{p}, Type: gpb.GetRequest_CONFIG, Encoding: gpb.Encoding_JSON_IETF})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	var js []byte
	for _, n := range resp.GetNotification() {
		for _, u := range n.GetUpdate() {
			js = u.GetVal().GetJsonIetfVal()
		}
	}
	if len(js) == 0 {
		return nil
	}
	if err := gen.Unmarshal(js, s); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	return nil
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

// namespaceTree renders the mapping of Kubernetes namespace ns to vrf.
func namespaceTree(ns, vrf string) *nsT {
	n := &nsT{Name: ygot.String(ns)}
	cf := n.GetOrCreateConfig()
	cf.Name = ygot.String(ns)
	cf.NetworkInstance = ygot.String(vrf)
	return n
}

func namespacePath(ns string) *gpb.Path {
	return &gpb.Path{Elem: []*gpb.PathElem{
		{Name: "cni"},
		{Name: "namespaces"},
		{Name: "namespace", Key: map[string]string{"name": ns}},
	}}
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
// most this many VRFs, namespace mappings or neighbors each, so no single Set outlasts the RPC
// timeout on a busy node. Each VRF is replaced whole in one of them: no
// node ever holds half of a network.
const maxOpsPerSet = 64

// setRequest is the next transaction towards want from have: the deletes
// first (namespace mappings before the VRFs they name), then the VRFs,
// namespace mappings and neighbors that differ, at most maxOpsPerSet of
// them. A mapping is written only once its VRF is on the node, and goes
// before its VRF does, so that every request passes the node's validation. It returns nil when nothing differs, and what the node holds once
// the request succeeded.
func setRequest(have nodeConfig, want nodeIntent) (*gpb.SetRequest, nodeConfig, error) {
	req := &gpb.SetRequest{}
	next := nodeConfig{vrfs: make(map[string]vrfIntent, len(want.vrfs)), neighbors: map[netip.Addr]uint32{},
		namespaces: maps.Clone(have.namespaces), bgpProtocol: have.bgpProtocol}
	if next.namespaces == nil {
		next.namespaces = map[string]string{}
	}
	for name, v := range have.vrfs {
		next.vrfs[name] = v
	}
	// wantNS is the mapping of ns, if its VRF stays on the node.
	wantNS := func(ns string) (string, bool) {
		vrf, ok := want.namespaces[ns]
		if _, on := want.vrfs[vrf]; !ok || !on {
			return "", false
		}
		return vrf, true
	}
	for a, as := range have.neighbors {
		next.neighbors[a] = as
	}
	full := func() bool { return len(req.Delete)+len(req.Replace) >= maxOpsPerSet }
	for _, ns := range sortedKeys(have.namespaces) {
		// A mapping still wanted whose VRF stays is replaced below when it
		// changed; one whose VRF goes is deleted here, before the VRF.
		_, wanted := wantNS(ns)
		if _, stays := want.vrfs[have.namespaces[ns]]; (wanted && stays) || full() {
			continue
		}
		req.Delete = append(req.Delete, namespacePath(ns))
		delete(next.namespaces, ns)
	}
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
	for _, ns := range sortedKeys(want.namespaces) {
		vrf, ok := wantNS(ns)
		if _, on := next.vrfs[vrf]; !ok || !on || have.namespaces[ns] == vrf || full() {
			continue
		}
		val, err := jsonVal(namespaceTree(ns, vrf))
		if err != nil {
			return nil, have, err
		}
		req.Replace = append(req.Replace, &gpb.Update{Path: namespacePath(ns), Val: val})
		next.namespaces[ns] = vrf
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
