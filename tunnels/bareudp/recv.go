package bareudp

// The bareudp receive path (bareudp_udp_encap_recv, then for MPLS the
// kernel's mpls_forward/mpls_egress in net/mpls/af_mpls.c): UDP payload
// from the socket -> source checked against the remote -> IP: version
// nibble checked against the ethertype; MPLS: label stack walked to the
// bottom, each label popped if it is ours or an explicit null, payload
// family checked -> stack.Device.Deliver (inner IP).

import (
	"net/netip"

	"github.com/udptunnel/udptunnel/stack"
)

// encap is the Socket's stack.Encap face.
type encap Socket

// BindSocket implements stack.EncapBinder: the socket is known before its
// first datagram.
func (e *encap) BindSocket(so *stack.Socket) { e.sock = so }

var _ stack.Encap = (*encap)(nil)
var _ stack.ErrorReceiver = (*encap)(nil)
var _ stack.EncapCloser = (*encap)(nil)

// Receive implements stack.Encap: bareudp_udp_encap_recv. Every drop it
// decides is counted on the socket.
func (e *encap) Receive(pkt *stack.PacketBuffer, src, dst netip.AddrPort) stack.Verdict {
	s := (*Socket)(e)
	c := s.sock.Counters()
	d := s.dev.Load()
	if d == nil {
		c.Drop(stack.DropUnknownTunnel)
		return stack.Consumed
	}
	if src.Addr().Unmap() != d.cfg.Remote.Unmap() {
		c.Drop(stack.DropPolicy)
		return stack.Consumed
	}
	if d.mpls {
		if dst.Addr().IsMulticast() && !d.cfg.Multiproto {
			// MPLS multicast (0x8848) only with multiproto.
			c.Drop(stack.DropPolicy)
			return stack.Consumed
		}
		if r := d.popLabels(pkt); r != popOK {
			c.Drop(stack.DropReason(r))
			return stack.Consumed
		}
		d.Deliver(pkt)
		return stack.Consumed
	}
	b, ok := pkt.Data().PullUp(1)
	if !ok {
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	switch v := b[0] >> 4; {
	case v == 4 && d.cfg.EtherType == EtherTypeIPv4,
		v == 6 && (d.cfg.EtherType == EtherTypeIPv6 || d.cfg.Multiproto):
	default:
		c.Drop(stack.DropBadHeader)
		return stack.Consumed
	}
	d.Deliver(pkt)
	return stack.Consumed
}

// popOK is popLabels' success: no stack.DropReason has this value.
const popOK = 255

// popLabels consumes pkt's label stack, or returns the reason to drop it:
//
//   - DropTruncated: the datagram ends before the bottom of the stack, or
//     nothing follows it;
//   - DropBadHeader: no bottom within MaxLabelDepth entries, implicit null
//     (3) or an unassigned reserved label (4-6, 8-12) on the wire, an
//     entropy label indicator at the bottom, or a payload that is not the
//     IP version the explicit null said, or not IP at all;
//   - DropPolicy: a top label TTL of 0 or 1 (expired: RFC 3032 §2.4.1 and
//     mpls_forward drop it), or a special-purpose label this package does
//     not process (router alert, GAL, OAM alert, extension label);
//   - DropUnknownTunnel: an ordinary label that is not in LocalLabels.
func (d *Device) popLabels(pkt *stack.PacketBuffer) stack.DropReason {
	data := pkt.Data()
	b, _ := data.PullUp(min(data.Size(), MaxLabelDepth*EntryLen))
	ls, err := ParseLabelStack(b)
	switch err {
	case nil:
	case ErrTruncated:
		return stack.DropTruncated
	default:
		return stack.DropBadHeader
	}
	version := uint8(0) // 0: from the payload's first nibble
	n := ls.Depth()
	for i := 0; i < n; i++ {
		e := ls.Entry(i)
		l := e.Label()
		if i == 0 && l != LabelEntropyIndicator && e.TTL() <= 1 {
			return stack.DropPolicy
		}
		switch {
		case l == LabelIPv4ExplicitNull:
			version = 4
		case l == LabelIPv6ExplicitNull:
			version = 6
		case l == LabelEntropyIndicator:
			// RFC 6790 §4.1: the next entry is the entropy label,
			// meaningful only for load balancing; pop both.
			if e.BottomOfStack() {
				return stack.DropBadHeader
			}
			i++
		case l == LabelRouterAlert, l == LabelGAL, l == LabelOAMAlert, l == LabelExtension:
			return stack.DropPolicy
		case l.Reserved():
			return stack.DropBadHeader
		default:
			if _, ok := d.local[l]; !ok {
				return stack.DropUnknownTunnel
			}
			version = 0 // a label of ours: the payload says its family
		}
	}
	data.Consume(len(ls))
	p, ok := data.PullUp(1)
	if !ok {
		return stack.DropTruncated
	}
	switch v := p[0] >> 4; {
	case v != 4 && v != 6, version != 0 && v != version:
		return stack.DropBadHeader
	}
	return popOK
}

// ReceiveError implements stack.ErrorReceiver: a "fragmentation needed" or
// "packet too big" for the remote lowers the device's MTU.
func (e *encap) ReceiveError(ie stack.ICMPError) {
	dst, mtu, ok := ie.PathMTU()
	if !ok {
		return
	}
	if d := (*Socket)(e).dev.Load(); d != nil && dst == d.cfg.Remote.Unmap() {
		d.UpdatePathMTU(mtu)
	}
}

// CloseEncap implements stack.EncapCloser (encap_destroy): the socket is
// closing, so its device goes too, also when it lives in another stack.
func (e *encap) CloseEncap() {
	if d := (*Socket)(e).dev.Load(); d != nil {
		d.Close()
	}
}
