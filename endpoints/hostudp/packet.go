package hostudp

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// outgoing is what transmit needs from a packet the stack wrote: the outer
// IPv4/IPv6 + UDP header fields, and where the UDP payload is.
type outgoing struct {
	is6              bool
	src, dst         netip.Addr
	srcPort, dstPort uint16
	tos, ttl         uint8
	// payloadOff is the offset of the UDP payload from the start of the
	// packet (its IP header); payloadLen its length.
	payloadOff, payloadLen int
	// size is the whole IP packet's size.
	size int
}

// parseResult says why a written packet cannot be sent.
type parseResult uint8

const (
	parseOK parseResult = iota
	parseNotUDP
	parseMalformed
)

// maxPeek is the most header bytes parseOutgoing reads: an IPv4 header
// with options and the UDP header.
const maxPeek = header.IPv4MaximumHeaderSize + header.UDPMinimumSize

// peek copies the first len(b) bytes of pkt (from its first header) into
// b, walking the buffer's views without allocating, and returns how many
// it copied.
func peek(pkt *stack.PacketBuffer, b []byte) int {
	views, off := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil && n < len(b); v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(b[n:], s[off:])
		off = 0
	}
	return n
}

// parseOutgoing validates the outer headers of pkt, a packet the stack
// wrote, once; transmit reads the result without further checks.
func parseOutgoing(pkt *stack.PacketBuffer, o *outgoing) parseResult {
	var buf [maxPeek]byte
	size := pkt.Size()
	b := buf[:peek(pkt, buf[:])]
	if len(b) == 0 {
		return parseMalformed
	}
	var l4 []byte
	switch b[0] >> 4 {
	case header.IPv4Version:
		h := header.IPv4(b)
		if len(b) < header.IPv4MinimumSize {
			return parseMalformed
		}
		hl := int(h.HeaderLength())
		if hl < header.IPv4MinimumSize || int(h.TotalLength()) != size || hl > len(b) {
			return parseMalformed
		}
		if h.TransportProtocol() != header.UDPProtocolNumber {
			return parseNotUDP
		}
		if h.More() || h.FragmentOffset() != 0 {
			// A fragment cannot be sent as a datagram (the MTU is meant
			// to prevent this).
			return parseMalformed
		}
		o.is6 = false
		o.src, o.dst = addrOf(h.SourceAddress()), addrOf(h.DestinationAddress())
		o.tos, _ = h.TOS()
		o.ttl = h.TTL()
		o.payloadOff = hl + header.UDPMinimumSize
		l4 = b[hl:]
	case header.IPv6Version:
		if len(b) < header.IPv6MinimumSize {
			return parseMalformed
		}
		h := header.IPv6(b)
		if int(h.PayloadLength())+header.IPv6MinimumSize != size {
			return parseMalformed
		}
		if h.TransportProtocol() != header.UDPProtocolNumber {
			// Extension headers included: the stack sends UDP without
			// them.
			return parseNotUDP
		}
		o.is6 = true
		o.src, o.dst = addrOf(h.SourceAddress()), addrOf(h.DestinationAddress())
		o.tos, _ = h.TOS()
		o.ttl = h.HopLimit()
		o.payloadOff = header.IPv6MinimumSize + header.UDPMinimumSize
		l4 = b[header.IPv6MinimumSize:]
	default:
		return parseMalformed
	}
	if len(l4) < header.UDPMinimumSize {
		return parseMalformed
	}
	u := header.UDP(l4)
	if int(u.Length()) != size-o.payloadOff+header.UDPMinimumSize || u.DestinationPort() == 0 {
		return parseMalformed
	}
	o.srcPort, o.dstPort = u.SourcePort(), u.DestinationPort()
	o.payloadLen = size - o.payloadOff
	o.size = size
	return parseOK
}

func addrOf(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}

func tcpipAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// headerSplit is how many leading bytes of a rebuilt packet get a view of
// their own (as memlink does, see its clone): gVisor's header reads pull
// up the chunk they touch, so a small header chunk keeps that copy small.
const headerSplit = 256

// newInbound returns a rebuilt IPv4/IPv6 + UDP packet from src to dst
// carrying a copy of payload, with a correct IP header checksum and, when
// udpChecksum is set, a correct UDP checksum (else zero over IPv4 and
// 0xffff over IPv6). It is marked checksum-verified either way: the host
// kernel verified the real datagram.
func newInbound(src, dst netip.AddrPort, payload []byte, udpChecksum bool) (*stack.PacketBuffer, tcpip.NetworkProtocolNumber) {
	return newInboundSum(src, dst, payload, udpChecksum, 0, false)
}

// newInboundSum is newInbound for a payload whose ones' complement sum is
// already known (haveSum): the UDP checksum then takes no pass over it.
func newInboundSum(src, dst netip.AddrPort, payload []byte, udpChecksum bool, sum uint16, haveSum bool) (*stack.PacketBuffer, tcpip.NetworkProtocolNumber) {
	hdrLen := outerLen(dst.Addr())
	total := hdrLen + len(payload)
	first := min(total, max(headerSplit, hdrLen))
	hv := buffer.NewViewSize(first)
	hb := hv.AsSlice()
	inHead := first - hdrLen
	copy(hb[hdrLen:], payload[:inHead])
	rest := payload[inHead:]

	proto := encodeOuter(hb, src, dst, len(payload), udpChecksum, func() uint16 {
		if haveSum {
			return sum
		}
		return checksum.Checksum(payload, 0)
	})
	buf := buffer.MakeWithView(hv)
	if len(rest) > 0 {
		pv := buffer.NewViewWithData(rest)
		buf.Append(pv)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buf})
	pkt.RXChecksumValidated = true
	return pkt, proto
}

// outerLen is the length of the outer IP and UDP headers of a rebuilt
// datagram to dst.
func outerLen(dst netip.Addr) int {
	if dst.Is6() {
		return header.IPv6MinimumSize + header.UDPMinimumSize
	}
	return header.IPv4MinimumSize + header.UDPMinimumSize
}

// encodeOuter writes the outer IP and UDP headers of a rebuilt datagram
// from src to dst with a UDP payload of payloadLen bytes at the start of hb
// (room for both headers). With udpChecksum the UDP checksum is computed,
// payloadSum giving the payload's ones' complement sum; without it the
// field is zero over IPv4 (no checksum) and 0xffff over IPv6 (the packet
// is marked verified anyway). It returns the network protocol.
func encodeOuter(hb []byte, src, dst netip.AddrPort, payloadLen int, udpChecksum bool, payloadSum func() uint16) tcpip.NetworkProtocolNumber {
	is6 := dst.Addr().Is6()
	ipLen := header.IPv4MinimumSize
	if is6 {
		ipLen = header.IPv6MinimumSize
	}
	udpLen := uint16(header.UDPMinimumSize + payloadLen)
	u := header.UDP(hb[ipLen:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: udpLen})
	srcA, dstA := tcpipAddr(src.Addr()), tcpipAddr(dst.Addr())
	proto := header.IPv4ProtocolNumber
	if is6 {
		proto = header.IPv6ProtocolNumber
		header.IPv6(hb).Encode(&header.IPv6Fields{
			PayloadLength:     udpLen,
			TransportProtocol: header.UDPProtocolNumber,
			HopLimit:          64,
			SrcAddr:           srcA,
			DstAddr:           dstA,
		})
	} else {
		ip := header.IPv4(hb)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen) + udpLen,
			TTL:         64,
			Protocol:    uint8(header.UDPProtocolNumber),
			SrcAddr:     srcA,
			DstAddr:     dstA,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	switch {
	case udpChecksum:
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcA, dstA, udpLen)
		xsum = checksum.Combine(xsum, payloadSum())
		u.SetChecksum(^u.CalculateChecksum(xsum))
		if u.Checksum() == 0 {
			u.SetChecksum(0xffff)
		}
	case is6:
		u.SetChecksum(0xffff)
	}
	return proto
}

// icmpKind is an ICMP error to synthesize, independent of the family.
type icmpKind uint8

const (
	icmpTooBig icmpKind = iota
	icmpPortUnreachable
	icmpHostUnreachable
	icmpNetUnreachable
	icmpTimeExceeded
	// icmpRaw passes the error queue's type and code through unchanged.
	icmpRaw
)

// hostError is an error the host reported for one datagram we sent: the
// fields of the ICMP packet to synthesize.
type hostError struct {
	kind      icmpKind
	typ, code uint8 // for icmpRaw
	mtu       uint32
	// from is the ICMP packet's source (the offender, or the datagram's
	// destination for errors the host raised itself).
	from netip.Addr
	// local and remote are the outer datagram's source and destination as
	// on the wire: the stack's address and the host socket's port, the
	// peer's address and port.
	local, remote netip.AddrPort
	// quoted is the start of the datagram's UDP payload, and length its
	// full length.
	quoted []byte
	length int
}

// maxQuote bounds the UDP payload quoted in a synthesized ICMP error: as
// much as the kernel's 576-byte ICMP errors hold, more than any tunnel
// header needs.
const maxQuote = 512

// newICMPError returns an ICMP (ICMPv6) error packet from e.from to
// e.local's address, quoting the datagram's outer IP and UDP headers and
// up to maxQuote bytes of its payload, with every checksum correct: what a
// router or the peer would have sent on a wire.
func newICMPError(e *hostError) (*stack.PacketBuffer, tcpip.NetworkProtocolNumber) {
	is6 := e.local.Addr().Is6()
	quoted := e.quoted[:min(len(e.quoted), maxQuote)]
	ipLen := header.IPv4MinimumSize
	if is6 {
		ipLen = header.IPv6MinimumSize
	}
	qLen := ipLen + header.UDPMinimumSize + len(quoted)
	total := ipLen + header.ICMPv4MinimumSize + qLen
	v := buffer.NewViewSize(total)
	b := v.AsSlice()
	icmp := b[ipLen : ipLen+header.ICMPv4MinimumSize]
	q := b[ipLen+header.ICMPv4MinimumSize:]
	local, remote := tcpipAddr(e.local.Addr()), tcpipAddr(e.remote.Addr())
	from := tcpipAddr(e.from)
	udpLen := uint16(header.UDPMinimumSize + e.length)

	// The quoted datagram, as it was on the wire.
	if is6 {
		header.IPv6(q).Encode(&header.IPv6Fields{
			PayloadLength: udpLen, TransportProtocol: header.UDPProtocolNumber, HopLimit: 64,
			SrcAddr: local, DstAddr: remote,
		})
	} else {
		qh := header.IPv4(q)
		qh.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize) + udpLen, TTL: 64, Flags: header.IPv4FlagDontFragment,
			Protocol: uint8(header.UDPProtocolNumber), SrcAddr: local, DstAddr: remote,
		})
		qh.SetChecksum(^qh.CalculateChecksum())
	}
	header.UDP(q[ipLen:]).Encode(&header.UDPFields{SrcPort: e.local.Port(), DstPort: e.remote.Port(), Length: udpLen})
	copy(q[ipLen+header.UDPMinimumSize:], quoted)

	proto := header.IPv4ProtocolNumber
	if is6 {
		proto = header.IPv6ProtocolNumber
		h := header.ICMPv6(icmp)
		switch e.kind {
		case icmpTooBig:
			h.SetType(header.ICMPv6PacketTooBig)
			binary.BigEndian.PutUint32(icmp[4:], e.mtu)
		case icmpPortUnreachable:
			h.SetType(header.ICMPv6DstUnreachable)
			h.SetCode(header.ICMPv6PortUnreachable)
		case icmpHostUnreachable, icmpNetUnreachable:
			h.SetType(header.ICMPv6DstUnreachable)
			h.SetCode(header.ICMPv6AddressUnreachable)
		case icmpTimeExceeded:
			h.SetType(header.ICMPv6TimeExceeded)
		case icmpRaw:
			h.SetType(header.ICMPv6Type(e.typ))
			h.SetCode(header.ICMPv6Code(e.code))
			if e.typ == uint8(header.ICMPv6PacketTooBig) {
				binary.BigEndian.PutUint32(icmp[4:], e.mtu)
			}
		}
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength: uint16(header.ICMPv6MinimumSize + qLen), TransportProtocol: header.ICMPv6ProtocolNumber,
			HopLimit: 64, SrcAddr: from, DstAddr: local,
		})
		h.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
			Header: h, Src: from, Dst: local, PayloadCsum: checksum.Checksum(q, 0), PayloadLen: len(q),
		}))
	} else {
		h := header.ICMPv4(icmp)
		switch e.kind {
		case icmpTooBig:
			h.SetType(header.ICMPv4DstUnreachable)
			h.SetCode(header.ICMPv4FragmentationNeeded)
			h.SetMTU(uint16(min(e.mtu, 0xffff)))
		case icmpPortUnreachable:
			h.SetType(header.ICMPv4DstUnreachable)
			h.SetCode(header.ICMPv4PortUnreachable)
		case icmpHostUnreachable:
			h.SetType(header.ICMPv4DstUnreachable)
			h.SetCode(header.ICMPv4HostUnreachable)
		case icmpNetUnreachable:
			h.SetType(header.ICMPv4DstUnreachable)
			h.SetCode(header.ICMPv4NetUnreachable)
		case icmpTimeExceeded:
			h.SetType(header.ICMPv4TimeExceeded)
		case icmpRaw:
			h.SetType(header.ICMPv4Type(e.typ))
			h.SetCode(header.ICMPv4Code(e.code))
			if e.typ == uint8(header.ICMPv4DstUnreachable) && e.code == uint8(header.ICMPv4FragmentationNeeded) {
				h.SetMTU(uint16(min(e.mtu, 0xffff)))
			}
		}
		h.SetChecksum(^checksum.Checksum(icmp, checksum.Checksum(q, 0)))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(total), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
			SrcAddr: from, DstAddr: local,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	return pkt, proto
}
