package e2e

import (
	"github.com/udptunnel/udptunnel/tunnels/geneve"
)

func init() {
	registerProtocol("geneve", Geneve)
	registerProtocol("geneve-l3", GeneveL3)
}

// Geneve is the TunnelFunc of a Geneve overlay (RFC 8926): one socket on
// port 6081 and one L2 device with VNI cfg.VNI whose remote is the peer.
func Geneve(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	return geneveEnd(h, cfg, false)
}

// GeneveL3 is Geneve carrying IP packets without an Ethernet header
// (protocol type 0x0800/0x86DD, the kernel's innerprotoinherit).
func GeneveL3(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	return geneveEnd(h, cfg, true)
}

func geneveEnd(h *Host, cfg OverlayConfig, l3 bool) (TunnelEnd, error) {
	s, err := geneve.OpenSocket(h.Stack, geneve.SocketConfig{})
	if err != nil {
		return TunnelEnd{}, err
	}
	d, err := s.AddDevice(nil, geneve.Config{
		VNI:               geneve.VNI(cfg.VNI),
		Remote:            h.Peer().Outer,
		UnderlayMTU:       cfg.UnderlayMTU,
		DF:                geneveDF(cfg),
		InnerProtoInherit: l3,
		ChecksumOffload:   cfg.ChecksumOffload,
		GSO:               cfg.GSO,
	})
	if err != nil {
		s.Close()
		return TunnelEnd{}, err
	}
	return TunnelEnd{Device: d.Device, Socket: s.Tunnel()}, nil
}

func geneveDF(cfg OverlayConfig) geneve.DF {
	if cfg.DF && !cfg.IPv6Underlay {
		return geneve.DFSet
	}
	return geneve.DFUnset
}
