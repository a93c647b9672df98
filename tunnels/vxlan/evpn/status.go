package evpn

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// Status is a snapshot of a speaker for operators: its sessions and the
// routes in and out, as `show bgp l2vpn evpn` would list them. It
// marshals to JSON for the CLI's admin listener.
type Status struct {
	ASN      uint32       `json:"asn"`
	RouterID netip.Addr   `json:"router_id"`
	VTEP     netip.Addr   `json:"vtep"`
	Peers    []PeerStatus `json:"peers"`
	VNIs     []VNIStatus  `json:"vnis"`
	Stats    Stats        `json:"stats"`
}

// PeerStatus is one BGP session.
type PeerStatus struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is the BGP FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State string `json:"state"`
	// Since is when the session entered State.
	Since time.Time `json:"since"`
	// Routes is the number of EVPN routes from the peer held now.
	Routes int `json:"routes"`
	// FirstRoute is the time from Established to the first route from
	// the peer installed in a table (0 until then).
	FirstRoute time.Duration `json:"first_route_ns"`
	// EndOfRIB is the time from Established to the peer's End-of-RIB
	// marker for l2vpn evpn (0 until then, or if the peer sends none).
	EndOfRIB time.Duration `json:"end_of_rib_ns"`
}

// VNIStatus is one bound VNI.
type VNIStatus struct {
	VNI           vxlan.VNI     `json:"vni"`
	Device        string        `json:"device"`
	RD            string        `json:"rd"`
	ImportTargets []string      `json:"import_targets"`
	ExportTargets []string      `json:"export_targets"`
	FloodList     []netip.Addr  `json:"flood_list"`
	Local         []LocalRoute  `json:"local"`
	Remote        []RemoteRoute `json:"remote"`
}

// LocalRoute is a local MAC and what is advertised for it.
type LocalRoute struct {
	MAC string       `json:"mac"`
	IPs []netip.Addr `json:"ips"`
	// Seq is the MAC mobility sequence number advertised.
	Seq uint32 `json:"seq"`
	// MovedAway says the routes are withdrawn: a remote VTEP advertises
	// the MAC with a higher sequence number.
	MovedAway bool `json:"moved_away"`
}

// RemoteRoute is a received route imported into the VNI.
type RemoteRoute struct {
	Type    int        `json:"type"` // 2 or 3
	RD      string     `json:"rd"`
	MAC     string     `json:"mac,omitempty"`
	IP      netip.Addr `json:"ip,omitzero"`
	NextHop netip.Addr `json:"next_hop,omitzero"`
	// Originator is the type-3 route's originating VTEP.
	Originator netip.Addr `json:"originator,omitzero"`
	Label      vxlan.VNI  `json:"label"`
	Seq        uint32     `json:"seq"`
	Peer       netip.Addr `json:"peer"`
	// Installed says the route is in effect: the one its MAC's FDB entry
	// or (MAC+IP) its IP's proxy entry comes from (type 2), or a flood
	// list entry (type 3).
	Installed bool `json:"installed"`
}

// fsmName is the state's name in FRR's and RFC 4271's words.
func fsmName(st bgp.FSMState) string {
	switch st {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// Status returns a snapshot of the speaker's sessions and routes.
func (s *Speaker) Status() Status {
	st := Status{ASN: s.cfg.ASN, RouterID: s.cfg.RouterID, VTEP: s.cfg.VTEP, Stats: s.Stats()}
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, p := range s.peers {
		st.Peers = append(st.Peers, PeerStatus{
			Address: addr, ASN: p.asn, State: fsmName(p.state), Since: p.since,
			Routes: p.received, FirstRoute: p.firstRoute, EndOfRIB: p.eor,
		})
	}
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	for _, b := range s.bindings {
		v := VNIStatus{
			VNI: b.in.vni, Device: b.dev.Name(), RD: b.in.rdText,
			ExportTargets: b.in.expTxt,
		}
		for rt := range b.in.imp {
			v.ImportTargets = append(v.ImportTargets, rt)
		}
		slices.Sort(v.ImportTargets)
		for a := range b.flood {
			v.FloodList = append(v.FloodList, a)
		}
		slices.SortFunc(v.FloodList, netip.Addr.Compare)
		for mac, lm := range b.local {
			l := LocalRoute{MAC: mac.String(), Seq: lm.seq, MovedAway: lm.yielded}
			for ip := range lm.ips {
				l.IPs = append(l.IPs, ip)
			}
			slices.SortFunc(l.IPs, netip.Addr.Compare)
			v.Local = append(v.Local, l)
		}
		slices.SortFunc(v.Local, func(a, b LocalRoute) int { return strings.Compare(a.MAC, b.MAC) })
		for _, r := range s.sortedRoutes() {
			if !b.imports(r) {
				continue
			}
			rr := RemoteRoute{Type: int(r.typ), RD: r.rd, Label: r.vni, Seq: r.seq, Peer: r.peer}
			if r.typ == typeInclusive {
				rr.Originator, rr.Installed = r.origin, b.flood[r.origin] != nil
			} else {
				rr.MAC, rr.IP, rr.NextHop = r.mac.String(), r.ip, r.nexthop
				// In effect: the FDB entry of its MAC comes from it, or
				// (MAC+IP) the proxy entry of its IP does.
				w := best(b.macs[r.mac])
				rr.Installed = w != nil && w.key == r.key && (b.local[r.mac] == nil || b.local[r.mac].yielded)
				if wi := best(b.ips[r.ip]); r.ip.IsValid() && wi != nil && wi.key == r.key {
					rr.Installed = true
				}
			}
			v.Remote = append(v.Remote, rr)
		}
		st.VNIs = append(st.VNIs, v)
	}
	slices.SortFunc(st.VNIs, func(a, b VNIStatus) int { return int(a.VNI) - int(b.VNI) })
	return st
}
