package e2e

import (
	"net/netip"

	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

// L2TP is the TunnelFunc of an L2TPv3 Ethernet pseudowire over UDP: one
// tunnel (ID 1 both ways) on port 1701 connected to the peer and one
// session with ID cfg.VNI both ways, a 4-byte cookie and the Default
// L2-Specific Sublayer with sequence numbers sent and required, so that
// the cookie check and the sequence check run on every packet.
func L2TP(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
	sock, err := l2tp.OpenSocket(h.Stack, l2tp.SocketConfig{
		TunnelID:     1,
		PeerTunnelID: 1,
		Local:        netip.AddrPortFrom(h.Outer, 0),
		Remote:       netip.AddrPortFrom(h.Peer().Outer, 0),
	})
	if err != nil {
		return TunnelEnd{}, err
	}
	cookie := []byte{0xc0, 0x0c, 0x1e, 0x42}
	d, err := sock.AddDevice(nil, l2tp.Config{
		ID:              l2tp.SessionID(cfg.VNI),
		PeerID:          l2tp.SessionID(cfg.VNI),
		Cookie:          cookie,
		PeerCookie:      cookie,
		L2Spec:          l2tp.L2SpecDefault,
		Seq:             l2tp.SeqBoth,
		UnderlayMTU:     cfg.UnderlayMTU,
		DF:              cfg.DF && !cfg.IPv6Underlay,
		ChecksumOffload: cfg.ChecksumOffload,
		GSO:             cfg.GSO,
	})
	if err != nil {
		sock.Close()
		return TunnelEnd{}, err
	}
	return TunnelEnd{Device: d.Device, Socket: sock.Tunnel()}, nil
}

func init() { registerProtocol("l2tp", L2TP) }
