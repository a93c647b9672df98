package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Partial checksums on receive.
//
// A sender on the same host as its peer may leave the TCP or UDP checksum
// of a packet to an offload: the Linux kernel's CHECKSUM_PARTIAL, whose
// field holds only the pseudo-header sum (gVisor does the same for the
// TCP data segments it sends with GSO; other packets it sends under
// checksum offload carry 0, which this does not take for partial).
// Between two kernels the mark travels with the packet (skb->ip_summed)
// and the receiver trusts it. Through a path that loses it — a host UDP
// socket that a kernel VXLAN device on the same host sends to over a veth
// — the packet arrives with a checksum that does not verify, and the
// inner stack would drop every TCP and UDP packet while ping still worked.
//
// A device that leaves verification to the inner stack (no
// ChecksumOffload) therefore completes such a checksum before delivery: a
// field that equals the pseudo-header sum of its packet is replaced by the
// real checksum (one pass over the packet, only then), which the inner
// stack then verifies as usual. The test costs a header parse per packet.
// A corrupted packet gets through that way only if its checksum field
// happens to equal the pseudo-header sum, about as likely as its
// corruption keeping the checksum valid.

// completePartial completes the TCP or UDP checksum of the packet at l3Off
// in data (network protocol proto) if its field holds the pseudo-header
// sum. It reports whether it did.
func completePartial(data gstack.PacketData, l3Off int, proto tcpip.NetworkProtocolNumber) bool {
	// One pull-up covers the IP header (options included) and the L4
	// header up to its checksum field: this runs for every packet.
	size := data.Size()
	b, ok := data.PullUp(min(size, l3Off+maxIPv4HeaderLen+header.TCPMinimumSize))
	if !ok || len(b) < l3Off+header.IPv4MinimumSize {
		return false
	}
	var (
		hl, end int
		l4      tcpip.TransportProtocolNumber
		addrs   []byte // source and destination, as the pseudo-header takes them
	)
	switch proto {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(b[l3Off:])
		hl, end = int(ip.HeaderLength()), int(ip.TotalLength())
		if hl < header.IPv4MinimumSize || end < hl || l3Off+end > size || ip.More() || ip.FragmentOffset() != 0 {
			return false
		}
		l4 = ip.TransportProtocol()
		addrs = ip[12:20]
	case header.IPv6ProtocolNumber:
		if len(b) < l3Off+header.IPv6MinimumSize {
			return false
		}
		ip := header.IPv6(b[l3Off:])
		hl, end = header.IPv6MinimumSize, header.IPv6MinimumSize+int(ip.PayloadLength())
		if l3Off+end > size {
			return false
		}
		l4 = ip.TransportProtocol()
		addrs = ip[8:40]
	default:
		return false
	}
	var fieldOff int
	switch l4 {
	case header.TCPProtocolNumber:
		fieldOff = 16
	case header.UDPProtocolNumber:
		fieldOff = 6
	default:
		return false
	}
	l4Off, l4Len := l3Off+hl, end-hl
	if l4Len < fieldOff+2 || len(b) < l4Off+fieldOff+2 {
		return false
	}
	field := uint16(b[l4Off+fieldOff])<<8 | uint16(b[l4Off+fieldOff+1])
	// header.PseudoHeaderChecksum, without building the addresses.
	pseudo := checksum.Combine(checksum.Checksum(addrs, 0), checksum.Combine(uint16(l4), uint16(l4Len)))
	if field == 0 || field != pseudo {
		return false
	}
	// The field holds the pseudo-header sum, so the sum of the L4 bytes as
	// they are is the pseudo-header sum plus the rest: its complement is
	// the checksum.
	var sum uint16
	if l3Off+end == size {
		// The whole frame's sum less its headers' (PacketData's
		// ChecksumAtOffset counts from the buffer's start, headers
		// consumed before the data included). l4Off is even: IP header
		// lengths are multiples of 4, Ethernet's is 14.
		sum = checksum.Combine(data.Checksum(), ^checksum.Checksum(b[:l4Off], 0))
	} else {
		// Link-layer padding after the packet: sum only the packet.
		all, ok := data.PullUp(l3Off + end)
		if !ok {
			return false
		}
		sum = checksum.Checksum(all[l4Off:], 0)
	}
	c := ^sum
	if c == 0 && l4 == header.UDPProtocolNumber {
		c = 0xffff // 0 means "no checksum"
	}
	// PullUp gives memory of this packet's own (a shared chunk is cloned).
	b, ok = data.PullUp(l4Off + fieldOff + 2)
	if !ok {
		return false
	}
	b[l4Off+fieldOff], b[l4Off+fieldOff+1] = byte(c>>8), byte(c)
	return true
}

// maxIPv4HeaderLen is the longest IPv4 header, options included.
const maxIPv4HeaderLen = 60
