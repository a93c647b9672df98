package e2e

import (
	"net/netip"

	"github.com/udptunnel/udptunnel/tunnels/bareudp"
)

// BareUDPPort is the port the bareudp TunnelFuncs use on both hosts:
// MPLS-in-UDP's 6635 (bareudp.MPLSPort), also for IP-in-UDP, as the
// kernel's bareudp selftest does; bareudp itself has no port.
const BareUDPPort = bareudp.MPLSPort

func init() {
	registerProtocol("bareudp", BareUDP)
	registerProtocol("mplsudp", MPLSUDP)
}

// BareUDP is the TunnelFunc of an IP-in-UDP overlay: a bareudp socket on
// BareUDPPort and a device with ethertype IPv4 and multiproto (so it
// carries IPv6 too) whose remote is the peer. It has no tunnel identifier:
// cfg.VNI is unused.
func BareUDP(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	return bareUDP(h, cfg, bareudp.Config{EtherType: bareudp.EtherTypeIPv4, Multiproto: true})
}

// MPLSUDP is the TunnelFunc of an MPLS-in-UDP overlay (RFC 7510): a bareudp
// socket on BareUDPPort and an MPLS unicast device whose remote is the
// peer, pushing label 1000+cfg.VNI on every packet and popping the same
// label, which is what the peer pushes.
func MPLSUDP(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	label := bareudp.Label(1000 + cfg.VNI)
	return bareUDP(h, cfg, bareudp.Config{
		EtherType:   bareudp.EtherTypeMPLSUnicast,
		Labels:      []bareudp.Label{label},
		LocalLabels: []bareudp.Label{label},
	})
}

func bareUDP(h *Host, cfg OverlayConfig, c bareudp.Config) (TunnelEnd, error) {
	s, err := bareudp.OpenSocket(h.Stack, bareudp.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, BareUDPPort)})
	if err != nil {
		return TunnelEnd{}, err
	}
	c.Remote = h.Peer().Outer
	c.UnderlayMTU = cfg.UnderlayMTU
	c.DF = cfg.DF && !cfg.IPv6Underlay
	c.ChecksumOffload = cfg.ChecksumOffload
	c.GSO = cfg.GSO
	d, err := s.AddDevice(nil, c)
	if err != nil {
		s.Close()
		return TunnelEnd{}, err
	}
	return TunnelEnd{Device: d.Device, Socket: s.Tunnel()}, nil
}
