package l2tp

// The L2TPv3 transmit path (l2tp_eth_dev_xmit -> l2tp_xmit_skb): an inner
// Ethernet frame written to the session's device -> L2TPv3 header pushed
// into the headroom (l2tp_build_l2tpv3_header: Session ID, cookie,
// sublayer with Ns) -> stack.Socket.Xmit (UDP from the tunnel's port,
// outer IP; l2tp_xmit_core -> udp_tunnel_xmit_skb).

import (
	"github.com/udptunnel/udptunnel/stack"
)

// transmitter is the Device's stack.Transmitter face.
type transmitter Device

// Transmit implements stack.Transmitter: l2tp_xmit_skb for one session.
// L2TP uses fixed ports, the tunnel's, not flow-hashed entropy ports
// (RFC 3931 §4.1.2.2; the kernel sends from the tunnel socket's port).
func (t *transmitter) Transmit(pkt *stack.PacketBuffer) error {
	d := (*Device)(t)
	s := d.sock
	f := Fields{SessionID: d.cfg.PeerID, Cookie: d.cfg.Cookie, L2Spec: d.cfg.L2Spec}
	p := stack.XmitParams{
		Src:        s.src,
		Dst:        s.cfg.Remote.Addr(),
		DstPort:    s.cfg.Remote.Port(),
		TOS:        d.cfg.TOS,
		TTL:        d.cfg.TTL,
		DF:         d.cfg.DF,
		NoChecksum: s.cfg.ZeroChecksum,
		Device:     stack.NICID(d.nic.Load()),
	}
	out, hdr := stack.NewTunnelPacket(pkt, f.Len())
	if !d.cfg.Seq.sends() {
		Header(hdr).Encode(&f)
		return s.sock.Xmit(out, p)
	}
	// Ns must reach the wire in order, or the peer's receive check drops
	// the overtaken packet: number and send under one lock (the kernel
	// relies on one transmit queue; gVisor may write from several
	// goroutines).
	d.txMu.Lock()
	defer d.txMu.Unlock()
	f.SeqValid, f.Seq = true, d.ns
	d.ns = (d.ns + 1) & MaxSeq
	Header(hdr).Encode(&f)
	return s.sock.Xmit(out, p)
}
