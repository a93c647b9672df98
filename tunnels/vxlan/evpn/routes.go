package evpn

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// This file translates between EVPN routes (GoBGP paths) and the facts
// the VTEP cares about: route building for origination, and parsing of
// received routes into remoteRoute.

// Route types of RFC 7432 §7 that this package speaks.
const (
	typeMACIP     = bgp.EVPN_ROUTE_TYPE_MAC_IP_ADVERTISEMENT  // 2
	typeInclusive = bgp.EVPN_INCLUSIVE_MULTICAST_ETHERNET_TAG // 3
)

// macIPPath builds the type-2 route of mac (and ip, if valid) for in.
func (s *Speaker) macIPPath(in *instance, mac vxlan.MAC, ip netip.Addr, seq uint32) (*apiutil.Path, error) {
	nlri, err := bgp.NewEVPNMacIPAdvertisementRoute(in.rd, bgp.EthernetSegmentIdentifier{}, 0,
		net.HardwareAddr(mac[:]).String(), ip, []uint32{uint32(in.vni)})
	if err != nil {
		return nil, err
	}
	// The MAC Mobility community goes out with sequence 0 too (RFC 7432
	// §7.7 allows leaving it out then): GoBGP counts a route without it
	// as -1, below a peer's explicit 0, and would withdraw ours for it.
	ecs := append(s.exportCommunities(in), bgp.NewMacMobilityExtended(seq, false))
	return s.path(nlri, ecs)
}

// forWithdrawal returns p as DeletePath must see it. GoBGP checks a MAC/IP
// route's MAC Mobility sequence number on withdrawal too and refuses one
// below the highest it holds for the MAC, which is the usual case when a
// moved MAC is withdrawn; a withdrawal carries no attributes on the wire,
// so it gets the highest number.
func forWithdrawal(p *apiutil.Path) *apiutil.Path {
	if n, ok := p.Nlri.(*bgp.EVPNNLRI); !ok || n.RouteType != typeMACIP {
		return p
	}
	w := *p
	w.Attrs = make([]bgp.PathAttributeInterface, 0, len(p.Attrs))
	for _, a := range p.Attrs {
		if ec, ok := a.(*bgp.PathAttributeExtendedCommunities); ok {
			var vs []bgp.ExtendedCommunityInterface
			for _, v := range ec.Value {
				if _, mm := v.(*bgp.MacMobilityExtended); !mm {
					vs = append(vs, v)
				}
			}
			a = bgp.NewPathAttributeExtendedCommunities(append(vs, bgp.NewMacMobilityExtended(math.MaxUint32, false)))
		}
		w.Attrs = append(w.Attrs, a)
	}
	return &w
}

// inclusivePath builds the type-3 route of in, with the PMSI tunnel
// attribute that FRR requires before it floods to us.
func (s *Speaker) inclusivePath(in *instance) (*apiutil.Path, error) {
	nlri, err := bgp.NewEVPNMulticastEthernetTagRoute(in.rd, 0, s.cfg.VTEP)
	if err != nil {
		return nil, err
	}
	p, err := s.path(nlri, s.exportCommunities(in))
	if err != nil {
		return nil, err
	}
	id, err := bgp.NewIngressReplTunnelID(s.cfg.VTEP)
	if err != nil {
		return nil, err
	}
	p.Attrs = append(p.Attrs, bgp.NewPathAttributePmsiTunnel(bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL, false, uint32(in.vni), id))
	return p, nil
}

func (s *Speaker) exportCommunities(in *instance) []bgp.ExtendedCommunityInterface {
	ecs := make([]bgp.ExtendedCommunityInterface, 0, len(in.exp)+2)
	ecs = append(ecs, in.exp...)
	return append(ecs, bgp.NewEncapExtended(bgp.TUNNEL_TYPE_VXLAN))
}

// path wraps nlri with the attributes common to every originated route:
// origin IGP, MP_REACH with the VTEP as next hop, extended communities.
func (s *Speaker) path(nlri *bgp.EVPNNLRI, ecs []bgp.ExtendedCommunityInterface) (*apiutil.Path, error) {
	mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_EVPN, []bgp.PathNLRI{{NLRI: nlri}}, s.cfg.VTEP)
	if err != nil {
		return nil, err
	}
	return &apiutil.Path{
		Family: bgp.RF_EVPN,
		Nlri:   nlri,
		Attrs: []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
			mp,
			bgp.NewPathAttributeExtendedCommunities(ecs),
		},
	}, nil
}

// remoteRoute is what a received EVPN route means to the VTEP.
type remoteRoute struct {
	key     string // the NLRI's text: one best path per NLRI
	typ     uint8
	rd      string
	vni     vxlan.VNI // the label: the VNI to send with
	mac     vxlan.MAC // type 2
	ip      netip.Addr
	nexthop netip.Addr // type 2: where unicast goes
	origin  netip.Addr // type 3: the flood list entry
	ingress bool       // type 3: PMSI tunnel of type ingress replication
	seq     uint32     // MAC mobility sequence number
	rts     []string
	peer    netip.Addr
}

// parseRoute extracts a remoteRoute from p. An error says why the route is
// of no use to this VTEP (another route type, a multihomed MAC, a PMSI
// other than ingress replication): counted as ignored, never fatal.
func parseRoute(p *apiutil.Path) (remoteRoute, error) {
	r := remoteRoute{peer: p.PeerAddress}
	n, ok := p.Nlri.(*bgp.EVPNNLRI)
	if !ok {
		return r, fmt.Errorf("not an EVPN route: %T", p.Nlri)
	}
	r.key = n.String()
	r.typ = n.RouteType
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			r.nexthop = a.Nexthop.Unmap()
		case *bgp.PathAttributeNextHop:
			if !r.nexthop.IsValid() {
				r.nexthop = a.Value.Unmap()
			}
		case *bgp.PathAttributeExtendedCommunities:
			for _, ec := range a.Value {
				switch ec := ec.(type) {
				case *bgp.MacMobilityExtended:
					r.seq = ec.Sequence
				default:
					if _, sub := ec.GetTypes(); sub == bgp.EC_SUBTYPE_ROUTE_TARGET {
						r.rts = append(r.rts, ec.String())
					}
				}
			}
		case *bgp.PathAttributePmsiTunnel:
			if a.TunnelType == bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL {
				r.ingress = true
				if r.vni == 0 {
					r.vni = vxlan.VNI(a.Label)
				}
			}
		}
	}
	switch d := n.RouteTypeData.(type) {
	case *bgp.EVPNMacIPAdvertisementRoute:
		r.rd = d.RD.String()
		if d.ESI.Type != 0 || !isZero(d.ESI.Value) {
			return r, errors.New("multihomed MAC (non-zero ESI)")
		}
		if len(d.MacAddress) != 6 {
			return r, fmt.Errorf("MAC address of %d bytes", len(d.MacAddress))
		}
		copy(r.mac[:], d.MacAddress)
		if r.mac.IsMulticast() || r.mac.IsZero() {
			return r, errors.New("multicast or zero MAC " + r.mac.String())
		}
		if d.IPAddressLength != 0 {
			r.ip = d.IPAddress.Unmap()
		}
		if len(d.Labels) > 0 {
			r.vni = vxlan.VNI(d.Labels[0])
		}
		if !r.nexthop.IsValid() || r.nexthop.IsUnspecified() {
			return r, errors.New("no next hop")
		}
	case *bgp.EVPNMulticastEthernetTagRoute:
		r.rd = d.RD.String()
		r.origin = d.IPAddress.Unmap()
		if !r.ingress {
			return r, errors.New("inclusive multicast route without ingress replication")
		}
		if !r.origin.IsValid() || r.origin.IsUnspecified() {
			return r, errors.New("inclusive multicast route without originator")
		}
	default:
		return r, fmt.Errorf("EVPN route type %d", n.RouteType)
	}
	if !r.vni.Valid() {
		return r, fmt.Errorf("label %d above 24 bits", r.vni)
	}
	return r, nil
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
