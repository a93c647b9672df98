package e2e

import (
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

func init() { registerProtocol("gtpu", GTPU) }

// GTPU is the TunnelFunc of a GTP-U overlay: one socket on port 2152 and one
// GGSN-role device with a single session for the peer's inner IPv4 and IPv6
// addresses (the peer plays the UE). The TEIDs come from cfg.VNI: host "a"
// receives on VNI and sends to VNI+1, host "b" the other way round, so that
// each direction has its own TEID.
func GTPU(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	sock, err := gtpu.OpenSocket(h.Stack, gtpu.SocketConfig{})
	if err != nil {
		return TunnelEnd{}, err
	}
	in, out := gtpu.TEID(cfg.VNI), gtpu.TEID(cfg.VNI)+1
	if h.Name != "a" {
		in, out = out, in
	}
	peer := h.Peer()
	d, err := sock.AddDevice(nil, gtpu.Config{
		Role:            gtpu.RoleGGSN,
		UnderlayMTU:     cfg.UnderlayMTU,
		DF:              cfg.DF && !cfg.IPv6Underlay,
		ChecksumOffload: cfg.ChecksumOffload,
		GSO:             cfg.GSO,
		Sessions: []gtpu.Session{{
			LocalTEID: in, RemoteTEID: out, Peer: peer.Outer,
			UE4: peer.Inner4, UE6: peer.Inner6,
		}},
	})
	if err != nil {
		sock.Close()
		return TunnelEnd{}, err
	}
	return TunnelEnd{Device: d.Device, Socket: sock.Tunnel()}, nil
}
