//go:build linux

package tun

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// udp4 builds an IPv4 UDP packet from 10.0.0.1:1000 to 10.0.0.2:4789 with
// a complete UDP checksum.
func udp4(payload []byte) []byte {
	p := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	src, dst := tcpip.AddrFrom4(netip.MustParseAddr("10.0.0.1").As4()), tcpip.AddrFrom4(netip.MustParseAddr("10.0.0.2").As4())
	header.IPv4(p).Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
	header.IPv4(p).SetChecksum(^header.IPv4(p).CalculateChecksum())
	u := header.UDP(p[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 4789, Length: uint16(len(u))})
	copy(u.Payload(), payload)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(u)))
	u.SetChecksum(^checksum.Checksum(u, sum))
	return p
}

// TestFinishRxPartialChecksum: a packet the kernel hands over with
// NEEDS_CSUM (the pseudo-header sum in the field) comes out with the
// checksum a sender would have computed.
func TestFinishRxPartialChecksum(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1400} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i*7 + n)
		}
		want := udp4(payload)
		p := append([]byte(nil), want...)
		u := header.UDP(p[header.IPv4MinimumSize:])
		ip := header.IPv4(p)
		u.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(u))))
		h := virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: header.IPv4MinimumSize, csumOffset: 6}
		e := &vnetEndpoint{}
		if e.finishRx(&h, p) != rxOK {
			t.Fatalf("%d bytes: finishRx refused the packet", n)
		}
		if got, w := header.UDP(p[header.IPv4MinimumSize:]).Checksum(), header.UDP(want[header.IPv4MinimumSize:]).Checksum(); got != w {
			t.Errorf("%d bytes: finished checksum %#04x, want %#04x", n, got, w)
		}
	}
	// A checksum field beyond the packet is refused, and so is a GSO type
	// the endpoint did not ask for (UDP_L4).
	e := &vnetEndpoint{}
	p := udp4(nil)
	if e.finishRx(&virtioNetHdr{flags: virtioNetHdrFNeedsCsum, csumStart: uint16(len(p)), csumOffset: 6}, p) != rxDropCsum {
		t.Error("finishRx accepted a checksum field beyond the packet")
	}
	if e.finishRx(&virtioNetHdr{gsoType: virtioNetHdrGSOUDPL4, gsoSize: 100}, p) != rxDropGSO {
		t.Error("finishRx accepted a UDP GSO packet")
	}
}

func TestVirtioNetHdrRoundTrip(t *testing.T) {
	h := virtioNetHdr{flags: 1, gsoType: 5, hdrLen: 28, gsoSize: 1472, csumStart: 20, csumOffset: 6}
	var b [virtioNetHdrSize]byte
	h.marshal(b[:])
	if got := parseVirtioNetHdr(b[:]); got != h {
		t.Errorf("round trip: %+v, want %+v", got, h)
	}
	h = virtioNetHdr{flags: 9, gsoType: 0x21, hdrLen: 102, gsoSize: 1398, csumStart: 70, csumOffset: 16,
		numBuffers: 1, hashValue: 0xdeadbeef, hashReport: 2, paddingReserved: 3, outerTh: 20, innerNh: 50}
	var tb [virtioNetHdrTnlSize]byte
	h.marshal(tb[:])
	if got := parseVirtioNetHdr(tb[:]); got != h {
		t.Errorf("tunnel round trip: %+v, want %+v", got, h)
	}
	// The tunnel offsets are little-endian at bytes 20 and 22.
	if tb[20] != 20 || tb[21] != 0 || tb[22] != 50 || tb[23] != 0 {
		t.Errorf("tunnel offsets at 20..23: % x", tb[20:])
	}
}

// tunnelGSO4 builds what the kernel hands a TUN with UDP-tunnel GSO: an
// outer IPv4 UDP datagram to 4789 (VXLAN header, Ethernet header) with an
// inner IPv4 TCP super-packet of n data bytes, the inner TCP checksum and
// (csum) the outer UDP checksum partial, and its 24-byte header. It
// returns the packet with complete checksums too.
func tunnelGSO4(n int, csum bool) (hdr virtioNetHdr, partial, want []byte) {
	const outerTh, innerNh, innerTh = 20, 20 + 8 + 8 + 14, 20 + 8 + 8 + 14 + 20
	p := make([]byte, innerTh+20+n)
	osrc, odst := tcpip.AddrFrom4([4]byte{10, 201, 0, 2}), tcpip.AddrFrom4([4]byte{10, 201, 0, 1})
	isrc, idst := tcpip.AddrFrom4([4]byte{10, 203, 0, 2}), tcpip.AddrFrom4([4]byte{10, 203, 0, 1})
	header.IPv4(p).Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: osrc, DstAddr: odst})
	header.IPv4(p).SetChecksum(^header.IPv4(p).CalculateChecksum())
	u := header.UDP(p[outerTh:])
	u.Encode(&header.UDPFields{SrcPort: 40000, DstPort: 4789, Length: uint16(len(u))})
	p[outerTh+8] = 8
	p[outerTh+8+7] = 42
	binary.BigEndian.PutUint16(p[innerNh-2:], uint16(header.IPv4ProtocolNumber))
	ip := header.IPv4(p[innerNh:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(p) - innerNh), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: isrc, DstAddr: idst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(p[innerTh:])
	tcp.Encode(&header.TCPFields{SrcPort: 5001, DstPort: 40001, SeqNum: 1, AckNum: 1, DataOffset: 20, Flags: header.TCPFlagAck, WindowSize: 1000})
	for i := range n {
		p[innerTh+20+i] = byte(i*13 + n)
	}
	l4Len := uint16(len(p) - innerTh)
	ipseudo := header.PseudoHeaderChecksum(header.TCPProtocolNumber, isrc, idst, l4Len)
	opseudo := header.PseudoHeaderChecksum(header.UDPProtocolNumber, osrc, odst, uint16(len(u)))
	want = append([]byte(nil), p...)
	header.TCP(want[innerTh:]).SetChecksum(^checksum.Checksum(want[innerTh:], ipseudo))
	if csum {
		uw := header.UDP(want[outerTh:])
		c := ^checksum.Checksum(uw, opseudo)
		if c == 0 {
			c = 0xffff
		}
		uw.SetChecksum(c)
	}
	tcp.SetChecksum(ipseudo)
	hdr = virtioNetHdr{flags: virtioNetHdrFNeedsCsum, gsoType: virtioNetHdrGSOTCPv4 | virtioNetHdrGSOUDPTunnelIPv4,
		hdrLen: innerTh + 20, gsoSize: 1398, csumStart: innerTh, csumOffset: 16, outerTh: outerTh, innerNh: innerNh}
	if csum {
		u.SetChecksum(opseudo)
		hdr.flags |= virtioNetHdrFUDPTunnelCsum
	}
	return hdr, p, want
}

// TestFinishRxTunnelGSO: a tunnel GSO packet comes out with both
// checksums complete (the outer one only when asked for), whole, counted.
func TestFinishRxTunnelGSO(t *testing.T) {
	for _, n := range []int{1, 1399, 3000, 60000} {
		for _, csum := range []bool{false, true} {
			h, p, want := tunnelGSO4(n, csum)
			e := &vnetEndpoint{tnl: true}
			if why := e.finishRx(&h, p); why != rxOK {
				t.Fatalf("%d bytes, outer csum %v: dropped (%d)", n, csum, why)
			}
			if string(p) != string(want) {
				t.Errorf("%d bytes, outer csum %v: TCP checksum %#04x want %#04x, UDP %#04x want %#04x", n, csum,
					binary.BigEndian.Uint16(p[86:]), binary.BigEndian.Uint16(want[86:]),
					binary.BigEndian.Uint16(p[26:]), binary.BigEndian.Uint16(want[26:]))
			}
			if s := e.stats(); s.RxTunnelGSO != 1 || s.RxGSO != 1 {
				t.Errorf("stats %+v", s)
			}
		}
	}
	// What the kernel would never send is refused, for its reason.
	for _, c := range []struct {
		name  string
		tnl   bool
		mod   func(h *virtioNetHdr)
		wantR rxDrop
	}{
		{"not negotiated", false, func(h *virtioNetHdr) {}, rxDropTunnel},
		{"both outer versions", true, func(h *virtioNetHdr) { h.gsoType |= virtioNetHdrGSOUDPTunnel }, rxDropTunnel},
		{"no NEEDS_CSUM", true, func(h *virtioNetHdr) { h.flags = 0 }, rxDropTunnel},
		{"inner USO", true, func(h *virtioNetHdr) { h.gsoType = virtioNetHdrGSOUDPL4 | virtioNetHdrGSOUDPTunnelIPv4 }, rxDropGSO},
		{"no inner GSO", true, func(h *virtioNetHdr) { h.gsoType = virtioNetHdrGSOUDPTunnelIPv4 }, rxDropGSO},
		{"outer_th short", true, func(h *virtioNetHdr) { h.outerTh = 19 }, rxDropTunnel},
		{"inner_nh inside UDP", true, func(h *virtioNetHdr) { h.innerNh = 27 }, rxDropTunnel},
		{"csum_start inside inner IP", true, func(h *virtioNetHdr) { h.csumStart = h.innerNh + 19 }, rxDropTunnel},
		{"csum_offset not TCP's", true, func(h *virtioNetHdr) { h.csumOffset = 6 }, rxDropTunnel},
		{"csum_start beyond", true, func(h *virtioNetHdr) { h.csumStart = 60000 }, rxDropTunnel},
	} {
		h, p, _ := tunnelGSO4(100, true)
		c.mod(&h)
		e := &vnetEndpoint{tnl: c.tnl}
		if got := e.finishRx(&h, p); got != c.wantR {
			t.Errorf("%s: finishRx = %d, want %d", c.name, got, c.wantR)
		}
	}
}
