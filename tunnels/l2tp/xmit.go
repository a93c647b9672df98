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
	// relies on the device's one transmit queue and its lock; gVisor may
	// write from several goroutines).
	//
	// A packet that comes back to this device while it is sending, through
	// a routing loop of nested tunnels, arrives on the same goroutine, where
	// Lock would deadlock; the kernel catches the same case by the owner of
	// the transmit lock ("Dead loop on virtual device"). Such a packet is
	// deeper than the one being sent, so a deeper packet that finds the
	// lock taken is numbered and sent without it: a loop then goes on to
	// the nesting limit and is dropped there, and a nested packet that
	// another goroutine sends at that moment may at worst overtake one
	// (which the peer counts as out of order).
	depth := int32(stack.NestingDepth(pkt))
	if !d.txMu.TryLock() {
		if depth > d.txDepth.Load() {
			return d.sendSeq(out, hdr, &f, p)
		}
		d.txMu.Lock()
	}
	defer d.txMu.Unlock()
	d.txDepth.Store(depth)
	return d.sendSeq(out, hdr, &f, p)
}

// sendSeq numbers and sends one packet of a session that sends sequence
// numbers.
func (d *Device) sendSeq(out *stack.PacketBuffer, hdr []byte, f *Fields, p stack.XmitParams) error {
	f.SeqValid, f.Seq = true, (d.ns.Add(1)-1)&MaxSeq
	Header(hdr).Encode(f)
	return d.sock.sock.Xmit(out, p)
}
