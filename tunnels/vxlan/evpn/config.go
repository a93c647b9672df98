package evpn

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// Config configures a Speaker: the BGP instance and the local VTEP.
type Config struct {
	// ASN is the local autonomous system number (1..4294967294).
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address; zero means VTEP
	// when that is IPv4.
	RouterID netip.Addr
	// VTEP is the local VTEP address: the outer source address of the
	// VXLAN devices, and the next hop, originator and PMSI tunnel
	// endpoint of every route this speaker originates. Required.
	VTEP netip.Addr
	// ListenPort is the TCP port on which the speaker accepts BGP
	// sessions; 0 means it never listens and only connects out (no root
	// needed). Port 179 needs root or CAP_NET_BIND_SERVICE.
	ListenPort uint16
	// ListenAddresses restrict the listener to these addresses; empty
	// means every address.
	ListenAddresses []netip.Addr
	// Neighbors are the BGP peers.
	Neighbors []Neighbor
	// HoldTime is the proposed hold time; 0 means 90 s (the keepalive
	// interval is a third of it).
	HoldTime time.Duration
	// ConnectRetry is the interval between connection attempts; 0 means
	// 5 s (GoBGP's default is 120 s, which makes a restarted peer wait).
	ConnectRetry time.Duration
	// Logger receives GoBGP's log; nil discards it below warnings.
	Logger *slog.Logger
}

// Neighbor is one BGP peer. iBGP or eBGP follows from its ASN.
type Neighbor struct {
	// Address is the peer's address. Required.
	Address netip.Addr
	// ASN is the peer's autonomous system number. Required.
	ASN uint32
	// Port is the peer's BGP port; 0 means 179.
	Port uint16
	// LocalAddress is the source address of the session; zero lets the
	// route choose.
	LocalAddress netip.Addr
	// Passive waits for the peer to connect and never connects out (it
	// needs ListenPort).
	Passive bool
	// MultihopTTL allows eBGP peers that are not directly connected
	// (ebgp-multihop); 0 means directly connected.
	MultihopTTL uint8
	// Password turns on TCP MD5 signatures (RFC 2385).
	Password string
}

// BindConfig configures the EVPN instance of one VNI.
type BindConfig struct {
	// RD is the route distinguisher of the routes originated for the VNI;
	// empty means router-id:VNI (type 1), as FRR derives it.
	RD string
	// ImportTargets are the route targets that import a received route
	// into the VNI; empty means AS:VNI (FRR's auto-derivation: a
	// four-octet AS contributes its low 16 bits).
	ImportTargets []string
	// ExportTargets are the route targets attached to originated routes;
	// empty means AS:VNI. eBGP needs explicit targets on one side at
	// least, since each side derives its own AS.
	ExportTargets []string
}

// Errors of configuration and use. They are wrapped with the field or
// object concerned; test them with errors.Is. Configuration errors also
// wrap stack.ErrInvalid.
var (
	// ErrClosed means the speaker or binding is closed.
	ErrClosed = errors.New("evpn: closed")
	// ErrNotLocal means the MAC address is not a local one of the binding.
	ErrNotLocal = errors.New("evpn: MAC address is not local")
)

// defaults returns cfg with its defaults applied.
func (cfg Config) defaults() Config {
	if !cfg.RouterID.IsValid() && cfg.VTEP.Is4() {
		cfg.RouterID = cfg.VTEP
	}
	if cfg.HoldTime == 0 {
		cfg.HoldTime = 90 * time.Second
	}
	if cfg.ConnectRetry == 0 {
		cfg.ConnectRetry = 5 * time.Second
	}
	return cfg
}

func invalid(field string, v any, why string) error {
	return fmt.Errorf("%s %v: %w: %s", field, v, stack.ErrInvalid, why)
}

// validate checks cfg (defaults applied); the error names the field.
func (cfg *Config) validate() error {
	switch {
	case cfg.ASN == 0 || cfg.ASN == 0xffffffff || cfg.ASN == 23456:
		return invalid("asn", cfg.ASN, "need 1..4294967294, not AS_TRANS")
	case !cfg.VTEP.IsValid() || cfg.VTEP.IsUnspecified() || cfg.VTEP.IsMulticast():
		return invalid("vtep", cfg.VTEP, "need the local VTEP's unicast address")
	case !cfg.RouterID.IsValid():
		return invalid("router_id", cfg.RouterID, "need an IPv4 address (the VTEP is IPv6)")
	case !cfg.RouterID.Is4() || cfg.RouterID.IsUnspecified():
		return invalid("router_id", cfg.RouterID, "need a non-zero IPv4 address")
	case cfg.HoldTime < 3*time.Second || cfg.HoldTime > 65535*time.Second:
		return invalid("hold_time", cfg.HoldTime, "need 3s..65535s")
	case cfg.ConnectRetry < time.Second:
		return invalid("connect_retry", cfg.ConnectRetry, "need at least 1s")
	case len(cfg.Neighbors) == 0:
		return invalid("neighbors", "[]", "need at least one BGP peer")
	}
	for i, a := range cfg.ListenAddresses {
		if !a.IsValid() {
			return invalid(fmt.Sprintf("listen_addresses[%d]", i), a, "need an address")
		}
	}
	seen := map[netip.Addr]bool{}
	for i, n := range cfg.Neighbors {
		f := fmt.Sprintf("neighbors[%d]", i)
		switch {
		case !n.Address.IsValid() || n.Address.IsUnspecified() || n.Address.IsMulticast():
			return invalid(f+".address", n.Address, "need the peer's unicast address")
		case seen[n.Address]:
			return invalid(f+".address", n.Address, "listed twice")
		case n.ASN == 0 || n.ASN == 0xffffffff || n.ASN == 23456:
			return invalid(f+".asn", n.ASN, "need 1..4294967294, not AS_TRANS")
		case n.Passive && cfg.ListenPort == 0:
			return invalid(f+".passive", true, "a passive neighbor needs listen_port")
		case n.LocalAddress.IsValid() && n.LocalAddress.Is4() != n.Address.Is4():
			return invalid(f+".local_address", n.LocalAddress, "address family differs from the neighbor's")
		case n.MultihopTTL != 0 && n.ASN == cfg.ASN:
			return invalid(f+".multihop_ttl", n.MultihopTTL, "only for eBGP peers")
		}
		seen[n.Address] = true
	}
	return nil
}

// instance is a validated BindConfig: parsed RD and route targets.
type instance struct {
	vni    vxlan.VNI
	rd     bgp.RouteDistinguisherInterface
	rdText string
	imp    map[string]bool // import targets, by their canonical text
	exp    []bgp.ExtendedCommunityInterface
	expTxt []string
}

// newInstance validates bc for vni under cfg; the error names the field.
func newInstance(cfg *Config, vni vxlan.VNI, bc BindConfig) (*instance, error) {
	in := &instance{vni: vni, imp: map[string]bool{}}
	if bc.RD == "" {
		rd, err := bgp.NewRouteDistinguisherIPAddressAS(cfg.RouterID, uint16(vni))
		if err != nil || vni > 0xffff {
			// FRR derives router-id:N with N its own VNI index when the VNI
			// does not fit the 16-bit field; ours must be explicit then.
			return nil, invalid("rd", "", fmt.Sprintf("vni %d does not fit the 16-bit assigned number of router-id:VNI; set rd", vni))
		}
		in.rd = rd
	} else {
		rd, err := bgp.ParseRouteDistinguisher(bc.RD)
		if err == nil {
			err = checkAdmin(bc.RD)
		}
		if err != nil {
			return nil, invalid("rd", bc.RD, err.Error())
		}
		in.rd = rd
	}
	in.rdText = in.rd.String()
	// FRR's automatic route target: AS:VNI as a two-octet-AS target,
	// with a four-octet AS cut to its low 16 bits (bgp_evpn's
	// form_auto_rt); the VNI always fits its 32-bit field.
	auto := func(string) ([]string, error) {
		return []string{fmt.Sprintf("%d:%d", cfg.ASN&0xffff, vni)}, nil
	}
	imp, exp := bc.ImportTargets, bc.ExportTargets
	var err error
	if len(imp) == 0 {
		if imp, err = auto("import_targets"); err != nil {
			return nil, err
		}
	}
	if len(exp) == 0 {
		if exp, err = auto("export_targets"); err != nil {
			return nil, err
		}
	}
	for i, s := range imp {
		rt, err := bgp.ParseRouteTarget(strings.TrimSpace(s))
		if err == nil {
			err = checkAdmin(strings.TrimSpace(s))
		}
		if err != nil {
			return nil, invalid(fmt.Sprintf("import_targets[%d]", i), s, err.Error())
		}
		in.imp[rt.String()] = true
	}
	for i, s := range exp {
		rt, err := bgp.ParseRouteTarget(strings.TrimSpace(s))
		if err == nil {
			err = checkAdmin(strings.TrimSpace(s))
		}
		if err != nil {
			return nil, invalid(fmt.Sprintf("export_targets[%d]", i), s, err.Error())
		}
		in.exp = append(in.exp, rt)
		in.expTxt = append(in.expTxt, rt.String())
	}
	return in, nil
}

// checkAdmin checks the field widths of an RD or route target
// "ADMIN:NUMBER", which GoBGP's parsers truncate silently: a two-octet AS
// takes a 32-bit number, a four-octet AS or an IPv4 address a 16-bit one.
func checkAdmin(s string) error {
	admin, num, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("want ADMIN:NUMBER")
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return fmt.Errorf("number %q: %w", num, err)
	}
	limit := uint64(0xffff)
	if as, err := strconv.ParseUint(admin, 10, 64); err == nil {
		switch {
		case as > 0xffffffff:
			return fmt.Errorf("AS %d above 32 bits", as)
		case as <= 0xffff:
			limit = 0xffffffff
		}
	} else if _, err := netip.ParseAddr(admin); err != nil {
		return fmt.Errorf("administrator %q: want an AS number or an IPv4 address", admin)
	}
	if n > limit {
		return fmt.Errorf("number %d above %d for administrator %s", n, limit, admin)
	}
	return nil
}

// Validate checks cfg as Start would, without starting anything; the
// error names the field.
func (cfg Config) Validate() error {
	cfg = cfg.defaults()
	return cfg.validate()
}

// ValidateBind checks bc for a device of VNI vni under cfg as Bind would,
// without binding anything; the error names the field.
func (cfg Config) ValidateBind(vni vxlan.VNI, bc BindConfig) error {
	cfg = cfg.defaults()
	_, err := newInstance(&cfg, vni, bc)
	return err
}
