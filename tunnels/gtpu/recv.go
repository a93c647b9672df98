package gtpu

// The GTP-U receive path (gtp_encap_recv, gtp1u_udp_encap_recv, gtp_rx):
// UDP payload from the socket -> GTP-U header and extension headers
// validated (only the header is pulled up) -> Echo Request answered, End
// Marker consumed, other signalling and unknown TEIDs passed to the control
// plane -> session by TEID -> inner address checked against the session's
// UE (gtp_check_ms) -> headers consumed -> stack.Device.Deliver.

import (
	"net/netip"
	"time"

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

// Receive implements stack.Encap: gtp1u_udp_encap_recv.
func (e *encap) Receive(pkt *stack.PacketBuffer, src, dst netip.AddrPort) stack.Verdict {
	s := (*Socket)(e)
	c := s.sock.Counters()
	data := pkt.Data()
	size := data.Size()
	// Pull up the header alone, growing as the chain of extension headers
	// demands; the T-PDU is never touched.
	var b []byte
	hl, need := 0, HeaderLen
	for need > 0 {
		var ok bool
		if b, ok = data.PullUp(min(need, size)); !ok {
			c.Drop(stack.DropTruncated)
			return stack.Consumed
		}
		var err error
		hl, need, err = scan(b, size)
		switch err {
		case nil:
		case ErrTruncated:
			c.Drop(stack.DropTruncated)
			return stack.Consumed
		default:
			c.Drop(stack.DropBadHeader)
			return stack.Consumed
		}
	}
	h := Header(b)
	end := HeaderLen + int(h.Length())

	switch h.Type() {
	case GPDU:
	case EchoRequest:
		s.echoRequests.Add(1)
		// §5.1: an Echo Request has the S flag set and TEID 0; without
		// S there is no sequence number to answer with. The kernel's
		// gtp1u_send_echo_resp drops both kinds too.
		if !h.HasSeq() || h.TEID() != 0 {
			c.Drop(stack.DropBadHeader)
			return stack.Consumed
		}
		s.sendEchoResponse(h.Seq(), src)
		return stack.Consumed
	case EndMarker:
		// §7.3.2: the last packet of a tunnel before a handover; it
		// carries no T-PDU.
		s.endMarkers.Add(1)
		return stack.Consumed
	default:
		// Echo Response, Error Indication, Supported Extension Headers
		// Notification and anything unknown go to the control plane, as
		// the kernel returns 1 for every type but G-PDU.
		return stack.PassToUDP
	}

	ent := (*s.teids.Load())[h.TEID()]
	if ent.dev == nil {
		// The kernel passes G-PDUs for unknown TEIDs to its userspace
		// daemon (which may send an Error Indication, §7.3.1), unless
		// this socket is configured to send them itself.
		if s.errInd {
			s.sendErrorIndication(h.TEID(), src, dst.Addr())
		}
		return stack.PassToUDP
	}
	d, ss := ent.dev, ent.sess
	dc := d.Counters()
	for it := h.Extensions(); ; {
		typ, _, ok := it.Next()
		if !ok {
			break
		}
		if ExtComprehensionRequired(typ) && !understood(typ) {
			// §5.2.1: a receiver that does not understand a
			// comprehension-required extension header discards the
			// message (and would send a Supported Extension Headers
			// Notification, which this package does not).
			dc.Drop(stack.DropPolicy)
			return stack.Consumed
		}
	}

	// gtp_check_ms: the UE address in the inner header must be the
	// session's.
	ip, ok := data.PullUp(min(hl+header.IPv6MinimumSize, end))
	if !ok || len(ip) <= hl {
		dc.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	ip = ip[hl:]
	sgsn := d.cfg.Role == RoleSGSN
	var ue netip.Addr
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < header.IPv4MinimumSize {
			dc.Drop(stack.DropTruncated)
			return stack.Consumed
		}
		off := 12 // GGSN: the source is the UE
		if sgsn {
			off = 16
		}
		ue = netip.AddrFrom4([4]byte(ip[off : off+4]))
		if ue != ss.UE4 {
			dc.Drop(stack.DropPolicy)
			return stack.Consumed
		}
	case 6:
		if len(ip) < header.IPv6MinimumSize {
			dc.Drop(stack.DropTruncated)
			return stack.Consumed
		}
		off := 8
		if sgsn {
			off = 24
		}
		ue = netip.AddrFrom16([16]byte(ip[off : off+16]))
		if ue != ss.UE6 {
			dc.Drop(stack.DropPolicy)
			return stack.Consumed
		}
	default:
		dc.Drop(stack.DropNotForUs)
		return stack.Consumed
	}
	// Octets after the Length field's end are not part of the message.
	if end < size {
		data.CapLength(end)
	}
	data.Consume(hl)
	d.Deliver(pkt)
	return stack.Consumed
}

// understood reports whether the receive path knows extension header type t
// well enough to skip it: the containers carry RAN and QoS metadata the
// inner stack has no use for.
func understood(t uint8) bool {
	switch t {
	case ExtRANContainer, ExtLongPDCPPDUNumber, ExtXwRANContainer, ExtNRRANContainer, ExtPDUSessionContainer, ExtPDCPPDUNumber:
		return true
	}
	return false
}

// sendEchoResponse answers an Echo Request (§7.2.2, gtp1u_send_echo_resp)
// from the socket's port to the request's source address and port
// (§4.4.2.2: a response goes to the request's source port; the kernel
// sends it to port 2152 instead, the same thing for a peer on 2152).
func (s *Socket) sendEchoResponse(seq uint16, to netip.AddrPort) {
	var b [EchoResponseLen]byte
	EncodeEchoResponse(b[:], seq)
	if err := s.sock.SendDatagram(b[:], to); err != nil {
		s.echoErrors.Add(1)
		return
	}
	s.echoResponses.Add(1)
}

// sendErrorIndication reports unknown TEID t to the G-PDU's sender (§7.3.1)
// at port 2152 (the GTP-U port of the sending entity, which may differ from
// the datagram's source port, carried in the UDP Port extension header),
// within the rate limit.
func (s *Socket) sendErrorIndication(t TEID, from netip.AddrPort, self netip.Addr) {
	if !s.takeToken() {
		s.errIndsLimited.Add(1)
		return
	}
	var b [ErrorIndicationMaxLen]byte
	n := EncodeErrorIndication(b[:], t, self, from.Port())
	if err := s.sock.SendDatagram(b[:n], netip.AddrPortFrom(from.Addr(), DefaultPort)); err != nil {
		s.errIndErrors.Add(1)
		return
	}
	s.errInds.Add(1)
}

// takeToken takes one token from the Error Indication bucket, refilled at
// errIndRate per second up to errIndRate.
func (s *Socket) takeToken() bool {
	s.bucketMu.Lock()
	defer s.bucketMu.Unlock()
	now := time.Now()
	s.tokens = min(s.errIndRate, s.tokens+now.Sub(s.lastRefill).Seconds()*s.errIndRate)
	s.lastRefill = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// ReceiveError implements stack.ErrorReceiver: a "fragmentation needed" or
// "packet too big" for a peer lowers the MTU of the devices that send to
// it.
func (e *encap) ReceiveError(ie stack.ICMPError) {
	dst, mtu, ok := ie.PathMTU()
	if !ok {
		return
	}
	seen := map[*Device]bool{}
	for _, ent := range *(*Socket)(e).teids.Load() {
		if !seen[ent.dev] && ent.sess.Peer.Unmap() == dst {
			seen[ent.dev] = true
			ent.dev.UpdatePathMTU(mtu)
		}
	}
}

// LookupError implements stack.ErrorLookup (the encap_err_lookup analog):
// an ICMP error counts only if it quotes a GTP-U header whose TEID is the
// remote TEID of one of the socket's sessions, i.e. a G-PDU this socket
// sent. Routers may quote as little as 8 octets of the UDP payload, enough
// for the TEID.
func (e *encap) LookupError(quoted []byte) bool {
	if len(quoted) < HeaderLen {
		return false
	}
	h := Header(quoted)
	if h.Version() != Version || !h.IsGTP() || h.Type() != GPDU {
		return false
	}
	for _, ent := range *(*Socket)(e).teids.Load() {
		if ent.sess.RemoteTEID == h.TEID() {
			return true
		}
	}
	return false
}

// CloseEncap implements stack.EncapCloser (gtp_encap_destroy): the socket
// is closing, so its devices go too, also those in another stack.
func (e *encap) CloseEncap() { (*Socket)(e).closeDevices() }
