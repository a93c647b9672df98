package e2e

import (
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

func init() {
	registerProtocol("gue", GUE)
	registerProtocol("fou", FOU)
}

// GUE is the TunnelFunc of a GUE overlay: one GUE socket on port 6080
// and one L3 device to the peer carrying IPv4 and IPv6, each packet's
// protocol named by the GUE header. GUE has no tunnel identifier: cfg.VNI
// is unused.
func GUE(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	return fouTunnel(h, cfg, fou.SocketConfig{Type: fou.TypeGUE})
}

// FOU is the TunnelFunc of a FOU overlay carrying GRE (GRE-in-UDP, RFC
// 8086) so that one device carries IPv4 and IPv6: a FOU socket for IP
// protocol 47 on port 4754 and one L3 GRE device to the peer whose GRE key
// is cfg.VNI.
func FOU(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	return fouTunnel(h, cfg, fou.SocketConfig{Type: fou.TypeFOU, Proto: fou.ProtoGRE})
}

func fouTunnel(h *Host, cfg OverlayConfig, sc fou.SocketConfig) (TunnelEnd, error) {
	s, err := fou.OpenSocket(h.Stack, sc)
	if err != nil {
		return TunnelEnd{}, err
	}
	dc := fou.Config{
		Remote:          h.Peer().Outer,
		Local:           h.Outer,
		UnderlayMTU:     cfg.UnderlayMTU,
		DF:              cfg.DF && !cfg.IPv6Underlay,
		ChecksumOffload: cfg.ChecksumOffload,
		GSO:             cfg.GSO,
	}
	if sc.Proto == fou.ProtoGRE {
		dc.HasKey, dc.Key = true, uint32(cfg.VNI)
	}
	d, err := s.AddDevice(nil, dc)
	if err != nil {
		s.Close()
		return TunnelEnd{}, err
	}
	return TunnelEnd{Device: d.Device, Socket: s.Tunnel()}, nil
}
