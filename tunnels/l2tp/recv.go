package l2tp

// The L2TPv3 receive path (l2tp_udp_encap_recv -> l2tp_udp_recv_core ->
// l2tp_recv_common -> l2tp_eth_dev_recv): UDP payload from the tunnel
// socket -> T bit and version -> session by Session ID (else back to the
// control plane's UDP queue) -> cookie -> Default L2-Specific Sublayer and
// sequence check (l2tp_recv_data_seq) -> headers consumed ->
// stack.Device.Deliver (inner Ethernet, inner IP).

import (
	"bytes"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/stack"
)

// encap is the Socket's stack.Encap face.
type encap Socket

// BindSocket implements stack.EncapBinder: the socket is known before its
// first datagram.
func (e *encap) BindSocket(so *stack.Socket) { e.sock = so }

var _ stack.Encap = (*encap)(nil)
var _ stack.ErrorReceiver = (*encap)(nil)
var _ stack.ErrorLookup = (*encap)(nil)
var _ stack.EncapCloser = (*encap)(nil)

// Receive implements stack.Encap: l2tp_udp_encap_recv.
func (e *encap) Receive(pkt *stack.PacketBuffer, _, _ netip.AddrPort) stack.Verdict {
	s := (*Socket)(e)
	c := s.sock.Counters()
	b, _ := pkt.Data().PullUp(min(pkt.Data().Size(), HeaderLen))
	h, err := Parse(b)
	switch err {
	case nil:
	case ErrControl:
		// RFC 3931 §4.1.2.1: T=1 is a control message, for the control
		// plane (the kernel's "goto pass").
		return s.pass()
	case ErrVersion:
		c.Drop(stack.DropBadHeader)
		return stack.Consumed
	default:
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	id := h.SessionID()
	if id == 0 {
		// Session ID 0 over UDP is reserved for control messages
		// (RFC 3931 §4.1.2.1).
		return s.pass()
	}
	d := s.sessions.Get(id)
	if d == nil {
		// l2tp_udp_recv_core: "Not found? Pass to userspace to deal with".
		return s.pass()
	}
	return d.receive(pkt)
}

// pass counts a datagram handed to the socket's plain UDP face.
func (s *Socket) pass() stack.Verdict {
	return stack.PassToUDP
}

// receive is l2tp_recv_common for session d: pkt's data starts at the
// L2TPv3 header, whose fixed part is valid and names d. Drops are counted
// on the device.
func (d *Device) receive(pkt *stack.PacketBuffer) stack.Verdict {
	c := d.Counters()
	cookieLen := len(d.cfg.PeerCookie)
	hlen := HeaderLen + cookieLen + d.cfg.L2Spec.Len()
	b, ok := pkt.Data().PullUp(hlen + header.EthernetMinimumSize)
	if !ok {
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	h := Header(b) // ValidateSession holds: b is long enough
	if cookieLen > 0 && !bytes.Equal(h.Cookie(cookieLen), d.cfg.PeerCookie) {
		// rx_cookie_discards: RFC 3931 §4.1 makes the cookie a check
		// against misdirected packets.
		c.Drop(stack.DropPolicy)
		return stack.Consumed
	}
	if d.cfg.L2Spec == L2SpecDefault {
		sl := h.Sublayer(cookieLen)
		switch {
		case sl.SeqValid():
			if !d.acceptSeq(sl.Seq()) {
				c.Drop(stack.DropPolicy)
				return stack.Consumed
			}
		case d.cfg.Seq.requires():
			// "recv data has no seq numbers when required".
			d.seqDiscards.Add(1)
			c.Drop(stack.DropPolicy)
			return stack.Consumed
		}
	}
	pkt.Data().Consume(hlen)
	d.Deliver(pkt)
	return stack.Consumed
}

// acceptSeq is l2tp_recv_data_seq without a reorder queue: it reports
// whether a packet with sequence number ns may be delivered and advances
// the expected number. In 24-bit serial arithmetic a number at or ahead of
// the expected one (by less than half the space) is accepted — a jump
// means lost packets, counted — and one behind it (a duplicate or a
// reordered packet) is discarded. The kernel discards jumps too unless a
// reorder timeout is set; a pseudowire that loses one packet should not
// lose the next ones. As in the kernel, oosCountMax+1 consecutive
// in-sequence packets behind the expected number (a restarted peer)
// resynchronise on them.
func (d *Device) acceptSeq(ns uint32) bool {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	if !d.synced {
		d.synced, d.nr = true, ns
	}
	switch diff := (ns - d.nr) & MaxSeq; {
	case diff == 0:
	case diff < 1<<23:
		d.seqJumps.Add(1)
	default:
		if ns == (d.nrOOS+1)&MaxSeq {
			d.oosCount++
		} else {
			d.oosCount = 0
		}
		d.nrOOS = ns
		if d.oosCount <= oosCountMax {
			d.seqDiscards.Add(1)
			return false
		}
		d.seqResyncs.Add(1)
	}
	d.nr = (ns + 1) & MaxSeq
	d.oosCount = 0
	return true
}

// ReceiveError implements stack.ErrorReceiver: a "fragmentation needed" or
// "packet too big" for the remote lowers the MTU of every session.
func (e *encap) ReceiveError(ie stack.ICMPError) {
	s := (*Socket)(e)
	dst, mtu, ok := ie.PathMTU()
	if !ok || dst != s.cfg.Remote.Addr().Unmap() {
		return
	}
	for _, d := range s.sessions.All() {
		d.UpdatePathMTU(mtu)
	}
}

// LookupError implements stack.ErrorLookup: an ICMP error counts only if
// it quotes a data message of one of the tunnel's sessions, which carries
// the peer's Session ID.
func (e *encap) LookupError(quoted []byte) bool {
	h, err := Parse(quoted)
	if err != nil {
		return false
	}
	for _, d := range (*Socket)(e).sessions.All() {
		if d.cfg.PeerID == h.SessionID() {
			return true
		}
	}
	return false
}

// CloseEncap implements stack.EncapCloser: the tunnel socket is closing,
// by Socket.Close or with its stack, so its sessions go too, also those
// whose devices live in another (inner) stack.
func (e *encap) CloseEncap() {
	for _, d := range (*Socket)(e).sessions.All() {
		d.Close()
	}
}
