package hostudp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func bytesOf(pkt *stack.PacketBuffer) []byte {
	v := pkt.ToView()
	defer v.Release()
	return append([]byte(nil), v.AsSlice()...)
}

// TestNewInbound: a rebuilt datagram parses back to what went in, with a
// valid IP header checksum and a valid UDP checksum (or the documented
// placeholder), both families, payloads below and above the header split.
func TestNewInbound(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.AddrPort
		size     int
		csum     bool
	}{
		{"v4-small", netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:4789"), 50, true},
		{"v4-large", netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:4789"), 1450, true},
		{"v4-empty", netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:4789"), 0, true},
		{"v4-trust", netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:4789"), 1450, false},
		{"v6-large", netip.MustParseAddrPort("[2001:db8::2]:40000"), netip.MustParseAddrPort("[2001:db8::1]:4789"), 1430, true},
		{"v6-trust", netip.MustParseAddrPort("[2001:db8::2]:40000"), netip.MustParseAddrPort("[2001:db8::1]:4789"), 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.size)
			for i := range payload {
				payload[i] = byte(i*13 + 1)
			}
			pkt, proto := newInbound(tc.src, tc.dst, payload, tc.csum)
			defer pkt.DecRef()
			if !pkt.RXChecksumValidated {
				t.Error("not marked checksum-verified")
			}
			b := bytesOf(pkt)
			var u header.UDP
			var srcA, dstA = tcpipAddr(tc.src.Addr()), tcpipAddr(tc.dst.Addr())
			if tc.dst.Addr().Is4() {
				if proto != header.IPv4ProtocolNumber {
					t.Fatalf("proto %d", proto)
				}
				ip := header.IPv4(b)
				if !ip.IsValid(len(b)) || !ip.IsChecksumValid() {
					t.Fatalf("invalid IPv4 header %x", b[:20])
				}
				if ip.SourceAddress() != srcA || ip.DestinationAddress() != dstA {
					t.Errorf("addresses %v -> %v", ip.SourceAddress(), ip.DestinationAddress())
				}
				u = header.UDP(b[20:])
			} else {
				ip := header.IPv6(b)
				if !ip.IsValid(len(b)) || ip.SourceAddress() != srcA || ip.DestinationAddress() != dstA {
					t.Fatalf("invalid IPv6 header %x", b[:40])
				}
				u = header.UDP(b[40:])
			}
			if u.SourcePort() != tc.src.Port() || u.DestinationPort() != tc.dst.Port() || int(u.Length()) != 8+tc.size {
				t.Errorf("UDP header %x", u[:8])
			}
			if diff := cmp.Diff(payload, []byte(u[8:])); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
			switch {
			case tc.csum:
				if !u.IsChecksumValid(srcA, dstA, checksum.Checksum(u[8:], 0)) {
					t.Errorf("UDP checksum %#04x invalid", u.Checksum())
				}
			case tc.dst.Addr().Is4():
				if u.Checksum() != 0 {
					t.Errorf("UDP checksum %#04x, want 0 (none) when trusting the host", u.Checksum())
				}
			default:
				if u.Checksum() != 0xffff {
					t.Errorf("UDP checksum %#04x, want the 0xffff placeholder", u.Checksum())
				}
			}
		})
	}
}

// TestNewICMPError: a synthesized error has valid checksums and quotes
// the outer datagram as it was on the wire.
func TestNewICMPError(t *testing.T) {
	quoted := []byte{0x08, 0, 0, 0, 0, 0, 42, 0, 1, 2, 3}
	for _, tc := range []struct {
		name               string
		local, remote      netip.AddrPort
		kind               icmpKind
		wantType, wantCode uint8
	}{
		{"v4-too-big", netip.MustParseAddrPort("192.0.2.1:4789"), netip.MustParseAddrPort("192.0.2.2:4789"), icmpTooBig, 3, 4},
		{"v4-port", netip.MustParseAddrPort("192.0.2.1:4789"), netip.MustParseAddrPort("192.0.2.2:4789"), icmpPortUnreachable, 3, 3},
		{"v6-too-big", netip.MustParseAddrPort("[2001:db8::1]:4789"), netip.MustParseAddrPort("[2001:db8::2]:4789"), icmpTooBig, 2, 0},
		{"v6-port", netip.MustParseAddrPort("[2001:db8::1]:4789"), netip.MustParseAddrPort("[2001:db8::2]:4789"), icmpPortUnreachable, 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			he := &hostError{kind: tc.kind, mtu: 1400, from: tc.remote.Addr(), local: tc.local, remote: tc.remote, quoted: quoted, length: 1000}
			pkt, _ := newICMPError(he)
			defer pkt.DecRef()
			b := bytesOf(pkt)
			from, to := tcpipAddr(tc.remote.Addr()), tcpipAddr(tc.local.Addr())
			var icmp, q []byte
			if tc.local.Addr().Is4() {
				ip := header.IPv4(b)
				if !ip.IsValid(len(b)) || !ip.IsChecksumValid() || ip.TransportProtocol() != header.ICMPv4ProtocolNumber {
					t.Fatalf("bad IPv4 header %x", b[:20])
				}
				icmp = b[20:]
				if checksum.Checksum(icmp, 0) != 0xffff {
					t.Error("ICMP checksum invalid")
				}
				q = icmp[8:]
				if tc.kind == icmpTooBig && header.ICMPv4(icmp).MTU() != 1400 {
					t.Errorf("MTU %d", header.ICMPv4(icmp).MTU())
				}
				qh := header.IPv4(q)
				if !qh.IsChecksumValid() || qh.SourceAddress() != to || qh.DestinationAddress() != from || qh.TransportProtocol() != header.UDPProtocolNumber {
					t.Errorf("quoted IPv4 header %x", q[:20])
				}
				q = q[20:]
			} else {
				ip := header.IPv6(b)
				if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
					t.Fatalf("bad IPv6 header %x", b[:40])
				}
				icmp = b[40:]
				h := header.ICMPv6(icmp)
				if header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: h[:8], Src: from, Dst: to,
					PayloadCsum: checksum.Checksum(icmp[8:], 0), PayloadLen: len(icmp) - 8}) != h.Checksum() {
					t.Error("ICMPv6 checksum invalid")
				}
				if tc.kind == icmpTooBig && h.MTU() != 1400 {
					t.Errorf("MTU %d", h.MTU())
				}
				q = icmp[8+40:]
			}
			if icmp[0] != tc.wantType || icmp[1] != tc.wantCode {
				t.Errorf("type/code %d/%d, want %d/%d", icmp[0], icmp[1], tc.wantType, tc.wantCode)
			}
			u := header.UDP(q)
			if u.SourcePort() != tc.local.Port() || u.DestinationPort() != tc.remote.Port() || u.Length() != 1008 {
				t.Errorf("quoted UDP header %x", q[:8])
			}
			if diff := cmp.Diff(quoted, []byte(q[8:])); diff != "" {
				t.Errorf("quoted payload (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseOutgoing: whatever the stack might write, parsing does not
// panic, and a packet it accepts has its payload inside the packet.
func FuzzParseOutgoing(f *testing.F) {
	// A valid IPv4/UDP datagram with 4 bytes of payload.
	f.Add([]byte{0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0xc0, 0, 0x12, 0xb5, 0, 12, 0, 0, 1, 2, 3, 4})
	// IPv4 ICMP: not UDP.
	f.Add([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0, 0, 0, 0, 0, 0, 0})
	// IPv4 with IHL beyond the packet.
	f.Add([]byte{0x4f, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2})
	// A bare IPv6 header claiming UDP, no UDP header.
	f.Add(append([]byte{0x60, 0, 0, 0, 0, 0, 17, 64}, make([]byte, 32)...))
	// Empty and one byte.
	f.Add([]byte{})
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		defer pkt.DecRef()
		var o outgoing
		if parseOutgoing(pkt, &o) == parseOK && (o.payloadOff+o.payloadLen != len(b) || o.payloadOff > len(b)) {
			t.Errorf("accepted with payload %d+%d in %d bytes", o.payloadOff, o.payloadLen, len(b))
		}
	})
}
