//go:build linux

package hostudp

import (
	"bytes"
	"math/bits"
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Receive-side inner TCP coalescing, the counterpart of the inner-offload
// transmit path (Config.InnerOffset): the kernel's UDP tunnel GRO
// (udp_gro_receive with a tunnel's gro_receive) followed by
// tcp_gro_receive. Consecutive datagrams of one read batch (and the
// segments of one UDP GRO datagram) that carry consecutive segments of one
// inner TCP flow become one datagram whose inner packet is one big TCP
// segment. It still enters the stack as an outer IP+UDP packet and goes
// through the tunnel socket and the device, once instead of once per
// segment. gVisor checks neither the NIC MTU nor the MSS on receive.
//
// A run of segments is merged only when, as tcp_gro_receive demands, they
// come from the same outer source, carry the same tunnel bytes (the
// InnerOffset bytes before the inner IP header), have inner IP headers
// without options or extension headers, unfragmented, equal in everything
// but length, ID (consecutive, or all equal) and checksum, and TCP headers
// equal in everything but sequence number, checksum and a PSH on the last
// segment, with contiguous sequence numbers, and every segment but the last
// as long as the first. A datagram whose inner checksums do not verify is
// dropped and counted (see inspect) and ends the run, as a bad checksum
// flushes the kernel's GRO.

// maxRun bounds the segments of one merged packet (UDP_GRO's and the
// kernel's GRO limit).
const maxRun = 64

// rxSeg is a datagram of a run: its UDP payload (in the read buffers) and
// what merging needs of it.
type rxSeg struct {
	data []byte
	// l4Off and dataOff are the offsets of the inner TCP header and its
	// payload in data.
	l4Off, dataOff int
	v6             bool
	// paySum is the ones' complement sum of the TCP payload.
	paySum uint16
	// udpSum is the ones' complement sum of all of data, known (haveSum)
	// once inspect verified its inner checksum: the rebuilt datagram's
	// UDP checksum then takes no second pass.
	udpSum  uint16
	haveSum bool
	seq     uint32
	id      uint16
	flags   header.TCPFlags
}

// payload returns seg's TCP payload.
func (s *rxSeg) payload() []byte { return s.data[s.dataOff:] }

// coalescer merges runs of datagrams of one socket; it belongs to the
// socket's receive goroutine.
type coalescer struct {
	innerOff    int
	udpChecksum bool
	// deliver takes each packet built, merged or not.
	deliver func(*stack.PacketBuffer, tcpip.NetworkProtocolNumber)
	// ethernet: the inner frame is Ethernet (Config.InnerEthernet).
	ethernet bool
	// stats is the endpoint's: merged packets, inner checksums completed
	// and failed.
	stats *counters

	src, local netip.AddrPort // the run's outer addresses
	run        []rxSeg
	runBytes   int // the merged UDP payload's size
	fixedID    bool
	closed     bool // the last segment ends the run (short, or PSH)
	parts      [maxRun][]byte
}

func newCoalescer(innerOff int, ethernet, udpChecksum bool, deliver func(*stack.PacketBuffer, tcpip.NetworkProtocolNumber), stats *counters) *coalescer {
	return &coalescer{
		innerOff: innerOff, ethernet: ethernet, udpChecksum: udpChecksum, deliver: deliver, stats: stats,
		run: make([]rxSeg, 0, maxRun),
	}
}

// add takes the UDP payload data of a datagram from src to local. data
// must stay valid until the next flush.
func (c *coalescer) add(src, local netip.AddrPort, data []byte) {
	var s rxSeg
	verdict, candidate := inspect(data, c.innerOff, c.ethernet, &s)
	switch verdict {
	case l4Bad:
		c.flush()
		c.stats.innerChecksum.Add(1)
		return
	case l4Completed:
		c.stats.rxCompleted.Add(1)
	}
	if !candidate {
		c.flush()
		c.deliver(newInboundSum(src, local, data, c.udpChecksum, s.udpSum, s.haveSum))
		return
	}
	if len(c.run) > 0 && !c.fits(src, local, &s) {
		c.flush()
	}
	if len(c.run) == 0 {
		c.src, c.local = src, local
		c.runBytes = len(data)
		c.fixedID = false
	} else {
		if len(c.run) == 1 && !s.v6 {
			c.fixedID = s.id == c.run[0].id
		}
		c.runBytes += len(data) - s.dataOff
	}
	c.run = append(c.run, s)
	c.closed = s.flags&header.TCPFlagPsh != 0 || len(s.payload()) < len(c.run[0].payload())
	if c.closed || len(c.run) == maxRun {
		c.flush()
	}
}

// l4Verdict is what inspect found of a datagram's inner TCP/UDP checksum.
type l4Verdict uint8

const (
	// l4Unchecked: no inner TCP/UDP checksum that the endpoint can check
	// (not IP, a fragment, IPv6 extension headers, a UDP over IPv6
	// without a checksum, which the stack's policy decides on, a short or
	// malformed header); delivered as it came.
	l4Unchecked l4Verdict = iota
	// l4Valid: the checksum verifies (or a UDP over IPv4 has none).
	l4Valid
	// l4Completed: the field held the pseudo-header sum alone (a
	// CHECKSUM_PARTIAL packet from this host) and now holds the checksum.
	l4Completed
	// l4Bad: the checksum (or the inner IPv4 header's) does not verify.
	l4Bad
)

// inspect checks the inner packet of data, whose inner IP header starts at
// innerOff (behind an Ethernet header with ethernet), as the inner stack
// will not (see "Inner checksums"): it verifies the inner IPv4 header
// checksum and the TCP or UDP checksum,
// completing a partial one in place, with one pass over the bytes. It also
// reports whether data is a merge candidate: an inner IPv4/IPv6 TCP
// segment with data, flags ACK (and maybe PSH), no IP options or extension
// headers, not a fragment, lengths exact, checksums valid. For a candidate
// it fills s.
func inspect(data []byte, innerOff int, ethernet bool, s *rxSeg) (v l4Verdict, candidate bool) {
	if len(data) < innerOff+header.IPv4MinimumSize {
		return l4Unchecked, false
	}
	ipb := data[innerOff:]
	if ethernet {
		// The Ethertype decides, not the version nibble: a VLAN tag
		// (TCI 0x4xxx) would pass for IPv4.
		switch tcpip.NetworkProtocolNumber(uint16(data[innerOff-2])<<8 | uint16(data[innerOff-1])) {
		case header.IPv4ProtocolNumber:
			if ipb[0]>>4 != header.IPv4Version {
				return l4Unchecked, false
			}
		case header.IPv6ProtocolNumber:
			if ipb[0]>>4 != header.IPv6Version {
				return l4Unchecked, false
			}
		default:
			return l4Unchecked, false
		}
	}
	var (
		src, dst tcpip.Address
		proto    uint8
		hl, end  int // the inner IP header's length, the packet's end in ipb
	)
	switch ipb[0] >> 4 {
	case header.IPv4Version:
		ip := header.IPv4(ipb)
		hl, end = int(ip.HeaderLength()), int(ip.TotalLength())
		if hl < header.IPv4MinimumSize || end < hl || end > len(ipb) {
			return l4Unchecked, false // not an IPv4 header (an L2 tunnel's other frame)
		}
		if !ip.IsChecksumValid() {
			return l4Bad, false
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return l4Unchecked, false
		}
		proto = ip.Protocol()
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
		s.id = ip.ID()
	case header.IPv6Version:
		if len(ipb) < header.IPv6MinimumSize {
			return l4Unchecked, false
		}
		ip := header.IPv6(ipb)
		hl, end = header.IPv6MinimumSize, header.IPv6MinimumSize+int(ip.PayloadLength())
		if end > len(ipb) {
			return l4Unchecked, false
		}
		proto = ip.NextHeader()
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
		s.v6 = true
	default:
		return l4Unchecked, false
	}
	l4 := ipb[hl:end]
	var thl, fieldOff int // the L4 header's length, its checksum field's offset
	switch tcpip.TransportProtocolNumber(proto) {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return l4Unchecked, false
		}
		thl = int(header.TCP(l4).DataOffset())
		if thl < header.TCPMinimumSize || thl > len(l4) {
			return l4Unchecked, false
		}
		fieldOff = 16
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return l4Unchecked, false
		}
		// A UDP length short of the IP payload: the datagram ends there
		// (the kernel trims to it); longer is malformed, for the stack.
		n := int(header.UDP(l4).Length())
		if n < header.UDPMinimumSize || n > len(l4) {
			return l4Unchecked, false
		}
		l4, end = l4[:n], hl+n
		thl, fieldOff = header.UDPMinimumSize, 6
		if header.UDP(l4).Checksum() == 0 {
			// RFC 768: none. Over IPv6 the stack's policy decides (RFC
			// 6936, stack.ChecksumPolicy.ZeroRx6).
			return l4Unchecked, false
		}
	default:
		return l4Unchecked, false
	}
	// The payload starts at an even offset of l4 (the header lengths are
	// multiples of 4), so the two sums combine as they are.
	hdrSum := checksum.Checksum(l4[:thl], 0)
	paySum := checksum.Checksum(l4[thl:], 0)
	pseudo := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(l4)))
	total := checksum.Combine(pseudo, checksum.Combine(hdrSum, paySum))
	field := uint16(l4[fieldOff])<<8 | uint16(l4[fieldOff+1])
	switch {
	case total == 0xffff:
		v = l4Valid
	case field == pseudo:
		// The sum without the field, complemented.
		sum := ^checksum.Combine(total, ^field)
		if sum == 0 && fieldOff == 6 {
			sum = 0xffff // UDP: 0 means "no checksum"
		}
		l4[fieldOff], l4[fieldOff+1] = byte(sum>>8), byte(sum)
		v = l4Completed
	default:
		return l4Bad, false
	}
	// The sum of all of data without another pass: the L4 bytes now sum
	// to the complement of the pseudo-header sum (their checksum
	// verifies; a ones' complement sum of data that is not all zeros is
	// never 0, so 0 stands for 0xffff).
	l4Sum := ^pseudo
	if l4Sum == 0 {
		l4Sum = 0xffff
	}
	l4Off, l4End := innerOff+hl, innerOff+end
	s.udpSum = checksum.Combine(checksum.Checksum(data[:l4Off], 0), swapOdd(l4Sum, l4Off))
	s.udpSum = checksum.Combine(s.udpSum, swapOdd(checksum.Checksum(data[l4End:], 0), l4End))
	s.haveSum = true

	// A merge candidate?
	if proto != uint8(header.TCPProtocolNumber) || (!s.v6 && hl != header.IPv4MinimumSize) ||
		end != len(ipb) || thl == len(l4) {
		return v, false
	}
	s.flags = header.TCP(l4).Flags()
	if s.flags&^header.TCPFlagPsh != header.TCPFlagAck {
		return v, false
	}
	s.l4Off = l4Off
	s.dataOff = s.l4Off + thl
	s.seq = header.TCP(l4).SequenceNumber()
	s.data = data
	s.paySum = paySum
	return v, true
}

// fits reports whether s continues the run from src to local.
func (c *coalescer) fits(src, local netip.AddrPort, s *rxSeg) bool {
	first, last := &c.run[0], &c.run[len(c.run)-1]
	if c.closed || src != c.src || local != c.local || s.v6 != first.v6 || s.dataOff != first.dataOff ||
		len(s.payload()) > len(first.payload()) || c.runBytes+len(s.payload()) > c.maxPayload() {
		return false
	}
	// Tunnel bytes, then the IP header but for length, ID and checksum.
	a, b := first.data, s.data
	if !bytes.Equal(a[:c.innerOff], b[:c.innerOff]) {
		return false
	}
	ipA, ipB := a[c.innerOff:first.l4Off], b[c.innerOff:s.l4Off]
	if s.v6 {
		// Version, traffic class, flow label; next header, hop limit and
		// addresses.
		if !bytes.Equal(ipA[:4], ipB[:4]) || !bytes.Equal(ipA[6:], ipB[6:]) {
			return false
		}
	} else {
		// Version, IHL, TOS; flags and fragment offset, TTL, protocol;
		// addresses.
		if !bytes.Equal(ipA[:2], ipB[:2]) || !bytes.Equal(ipA[6:10], ipB[6:10]) || !bytes.Equal(ipA[12:], ipB[12:]) {
			return false
		}
		switch {
		case len(c.run) == 1:
			if s.id != last.id && s.id != last.id+1 {
				return false
			}
		case c.fixedID:
			if s.id != last.id {
				return false
			}
		default:
			if s.id != last.id+1 {
				return false
			}
		}
	}
	// TCP: ports, ACK number, header length, window and options equal;
	// sequence numbers contiguous; flags were checked by inspect (and a PSH
	// closed the run).
	tA, tB := a[first.l4Off:first.dataOff], b[s.l4Off:s.dataOff]
	return bytes.Equal(tA[:4], tB[:4]) && bytes.Equal(tA[8:13], tB[8:13]) && bytes.Equal(tA[14:16], tB[14:16]) &&
		bytes.Equal(tA[header.TCPMinimumSize:], tB[header.TCPMinimumSize:]) &&
		s.seq == last.seq+uint32(len(last.payload()))
}

// maxPayload is the largest UDP payload a merged outer packet may carry:
// its IP packet (IPv4) or payload (IPv6) within 65535 bytes.
func (c *coalescer) maxPayload() int {
	if c.local.Addr().Is6() {
		return 0xffff - header.UDPMinimumSize
	}
	return 0xffff - header.IPv4MinimumSize - header.UDPMinimumSize
}

// flush delivers the run: a lone datagram as it came, several as one
// merged datagram. A nil coalescer has nothing to flush.
func (c *coalescer) flush() {
	if c == nil {
		return
	}
	switch len(c.run) {
	case 0:
		return
	case 1:
		s := &c.run[0]
		c.deliver(newInboundSum(c.src, c.local, s.data, c.udpChecksum, s.udpSum, s.haveSum))
	default:
		c.deliver(c.build())
		c.stats.rxMerged.Add(1)
		c.stats.rxCoalesced.Add(uint64(len(c.run)))
	}
	clear(c.run)
	c.run = c.run[:0]
	c.closed = false
}

// swapOdd returns the ones' complement sum sum of bytes that start at off
// in a larger buffer, as it counts there: byte-swapped at an odd offset.
func swapOdd(sum uint16, off int) uint16 {
	if off&1 != 0 {
		return bits.ReverseBytes16(sum)
	}
	return sum
}

// build returns the merged datagram of the run: the first segment's
// headers, fixed for the total length, followed by every segment's TCP
// payload. Checksums come from the sums inspect took, without another pass
// over the payload.
func (c *coalescer) build() (*stack.PacketBuffer, tcpip.NetworkProtocolNumber) {
	first := &c.run[0]
	hdrLen := outerLen(c.local.Addr())
	prefix := first.dataOff // tunnel, inner IP and TCP headers
	size := c.runBytes      // the UDP payload
	hv := buffer.NewViewSize(hdrLen + prefix)
	hb := hv.AsSlice()
	p := hb[hdrLen:]
	copy(p, first.data[:prefix])

	// Inner IP and TCP headers.
	l4Len := size - first.l4Off
	var src, dst tcpip.Address
	if first.v6 {
		ip := header.IPv6(p[c.innerOff:])
		ip.SetPayloadLength(uint16(l4Len))
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	} else {
		ip := header.IPv4(p[c.innerOff:])
		ip.SetTotalLength(uint16(size - c.innerOff))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	}
	tcp := header.TCP(p[first.l4Off:])
	tcp.SetFlags(uint8(c.run[len(c.run)-1].flags))
	tcp.SetChecksum(0)
	pv := buffer.NewViewSize(size - prefix)
	pb := pv.AsSlice()
	var paySum uint16
	off := 0
	for i := range c.run {
		s := &c.run[i]
		n := copy(pb[off:], s.payload())
		paySum = checksum.Combine(paySum, swapOdd(s.paySum, off))
		off += n
	}
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(l4Len))
	sum = checksum.Checksum(p[first.l4Off:prefix], sum)
	tcp.SetChecksum(^checksum.Combine(sum, paySum))

	// Outer IP and UDP headers.
	proto := encodeOuter(hb, c.src, c.local, size, c.udpChecksum, func() uint16 {
		return checksum.Combine(checksum.Checksum(p, 0), swapOdd(paySum, prefix))
	})
	buf := buffer.MakeWithView(hv)
	buf.Append(pv)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buf})
	pkt.RXChecksumValidated = true
	return pkt, proto
}
