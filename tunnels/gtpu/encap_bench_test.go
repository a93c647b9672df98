package gtpu

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link
// (the outer IP write included, and measured alone for subtraction), decap
// from the tunnel socket's HandlePacket to the device's dispatcher (the
// inner IP layer not run).

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

const benchPayload = 1400 // inner UDP payload: a 1428-byte inner packet

var (
	voidPeer = netip.MustParseAddr("10.99.0.2")
	ue4      = netip.MustParseAddr("192.168.42.2")
	ue6      = netip.MustParseAddr("fd42::2")
	self4    = netip.MustParseAddr("192.168.42.1")
)

// voidHost is a stack with an underlay that leads nowhere (10.99.0.1/24)
// and a GTP-U socket with one GGSN device: session TEID 42 in, 43 out, peer
// 10.99.0.2, UE 192.168.42.2 and fd42::2.
func voidHost(tb testing.TB) (*stack.Stack, *Socket, *Device) {
	st := tunneltest.VoidStack(tb)
	s, err := OpenSocket(st, SocketConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	d, err := s.AddDevice(nil, Config{ZeroChecksum: true, Sessions: []Session{{LocalTEID: 42, RemoteTEID: 43, Peer: voidPeer, UE4: ue4, UE6: ue6}}})
	if err != nil {
		tb.Fatal(err)
	}
	return st, s, d
}

// innerPacket builds an outbound inner IPv4/UDP packet to the UE as the
// inner stack hands it to the device, with headroom for the encapsulation.
func innerPacket() *stack.PacketBuffer {
	return tunneltest.InnerIPv4(8+HeaderLen+stack.DefaultOuterHeadroom, self4, ue4, benchPayload)
}

// BenchmarkEncap is the device's transmit path for one inner packet:
// session lookup, flow source port, tunnel packet (no copy), GTP-U and UDP
// headers, route cache, outer IPv4 header and the underlay NIC write.
// "outer-ip-only" is the same outer write of a same-sized UDP datagram
// without the tunnel, to subtract.
func BenchmarkEncap(b *testing.B) {
	st, _, d := voidHost(b)
	b.Run("gtpu", func(b *testing.B) {
		pkt := innerPacket()
		defer pkt.DecRef()
		tunneltest.Loop(b, tunneltest.Transmit(b, (*transmitter)(d), pkt))
	})
	b.Run("outer-ip-only", func(b *testing.B) {
		tunneltest.Loop(b, tunneltest.OuterWrite(b, st, DefaultPort, benchPayload+header.IPv4MinimumSize+header.UDPMinimumSize+HeaderLen))
	})
}

// TestEncapNoAllocs guards the transmit path: GTP-U encapsulation (session
// lookup, flow port, tunnel packet, header) allocates nothing. The outer
// IPv4 write below it does allocate in gVisor (the NIC's queueing
// discipline builds a packet list, the IPv4 layer draws a random ID: 2
// allocations), so the test measures that write alone, the same way
// BenchmarkEncap/outer-ip-only does, and requires Transmit to cost exactly
// as much.
func TestEncapNoAllocs(t *testing.T) {
	st, s, d := voidHost(t)
	pkt := innerPacket()
	defer pkt.DecRef()
	send := tunneltest.Transmit(t, (*transmitter)(d), pkt)
	send() // warm the route cache
	outerOnly := tunneltest.OuterWrite(t, st, DefaultPort, pkt.Size()+HeaderLen)
	tunneltest.SkipIfRace(t)
	before := s.Tunnel().Counters().Stats().TxPackets
	base := testing.AllocsPerRun(1000, outerOnly)
	if n := testing.AllocsPerRun(1000, send); n > base {
		t.Errorf("encapsulation allocates %v times per packet, the outer IP write alone %v: GTP-U adds %v, want 0", n, base, n-base)
	}
	if got := s.Tunnel().Counters().Stats().TxPackets - before; got != 1001 {
		t.Errorf("socket sent %d datagrams, want 1001", got)
	}
	t.Logf("outer IPv4 write alone: %v allocations per packet", base)
}

// gpdu returns a G-PDU for teid carrying an IPv4/UDP packet from src to
// 192.168.42.1 with n zero octets of payload; with psc it has a PDU Session
// Container extension header, as a gNB sends.
func gpdu(teid TEID, src netip.Addr, n int, psc bool) []byte {
	hl := HeaderLen
	if psc {
		hl = LongHeaderLen + 4
	}
	inner := header.IPv4MinimumSize + header.UDPMinimumSize + n
	b := make([]byte, hl+inner)
	f := Fields{Type: GPDU, Length: uint16(hl - HeaderLen + inner), TEID: teid}
	if psc {
		f.NextExt = ExtPDUSessionContainer
		copy(b[LongHeaderLen:], []byte{1, 0x10, 0x09, 0})
	}
	Header(b).Encode(&f)
	ip := header.IPv4(b[hl:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(inner), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(self4.As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	header.UDP(b[hl+header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: 1000, DstPort: 2000, Length: uint16(header.UDPMinimumSize + n)})
	return b
}

// datagram4 wraps payload in IPv4 and UDP from 10.99.0.2:40000 to
// 10.99.0.1:2152 (no UDP checksum, as IPv4 allows).
func datagram4(payload []byte) []byte {
	return tunneltest.Datagram4(40000, DefaultPort, payload)
}

// BenchmarkDecap is the receive path for one G-PDU carrying a 1428-byte
// inner packet, from the UDP demux to the device's dispatcher: UDP checks,
// GTP-U header (and a PDU Session Container), TEID lookup, UE check,
// headers consumed, inner packet built and dispatched. "packet-only"
// builds and frees the same received packet without the tunnel, to
// subtract.
func BenchmarkDecap(b *testing.B) {
	for _, mode := range []string{"short", "pdu-session-container", "packet-only"} {
		b.Run(mode, func(b *testing.B) {
			st, _, d := voidHost(b)
			cd := tunneltest.Count(st, d.Name())
			wire := datagram4(gpdu(42, ue4, benchPayload, mode == "pdu-session-container"))
			sockEP := tunneltest.TunnelEndpoint(b, st)
			b.ReportAllocs()
			for b.Loop() {
				pkt := tunneltest.Received(wire)
				if mode != "packet-only" {
					sockEP.HandlePacket(gstack.TransportEndpointID{}, pkt)
				}
				pkt.DecRef()
			}
			if mode != "packet-only" && cd.Delivered() == 0 {
				b.Fatal("nothing was delivered")
			}
		})
	}
}

// TestDecapNoAllocs guards the receive path: from the tunnel socket to the
// device's dispatcher, a G-PDU costs no allocation, with or without an
// extension header.
func TestDecapNoAllocs(t *testing.T) {
	for _, psc := range []bool{false, true} {
		st, _, d := voidHost(t)
		cd := tunneltest.Count(st, d.Name())
		wire := datagram4(gpdu(42, ue4, 100, psc))
		sockEP := tunneltest.TunnelEndpoint(t, st)
		receive := tunneltest.Receive(sockEP, wire)
		receive()
		tunneltest.SkipIfRace(t)
		if n := testing.AllocsPerRun(1000, receive); n != 0 {
			t.Errorf("psc %v: decapsulation allocates %v times per packet, want 0", psc, n)
		}
		if got := cd.Delivered(); got != 1002 {
			t.Errorf("psc %v: delivered %d packets, want 1002", psc, got)
		}
	}
}
