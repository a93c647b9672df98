package gtpu

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link
// (the outer IP write included, and measured alone for subtraction), decap
// from the tunnel socket's HandlePacket to the device's dispatcher (the
// inner IP layer not run).

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/pipe"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

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
	st := stack.New(stack.Options{})
	tb.Cleanup(st.Close)
	void, _ := pipe.New("\x02\x00\x00\x00\x00\x01", "\x02\x00\x00\x00\x00\x02", 65000)
	nic, err := st.AddNIC(void, stack.NICOptions{Name: "underlay"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.AddAddress(nic, netip.MustParsePrefix("10.99.0.1/24")); err != nil {
		tb.Fatal(err)
	}
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
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: 8 + HeaderLen + stack.DefaultOuterHeadroom + header.IPv4MinimumSize + header.UDPMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, benchPayload)),
	})
	udp := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
	udp.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 2000, Length: header.UDPMinimumSize + benchPayload})
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + header.UDPMinimumSize + benchPayload), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(self4.As4()), DstAddr: tcpip.AddrFrom4(ue4.As4())})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	return pkt
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
		tx := (*transmitter)(d)
		b.ReportAllocs()
		for b.Loop() {
			if err := tx.Transmit(pkt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("outer-ip-only", func(b *testing.B) {
		r, terr := st.GVisor().FindRoute(0, tcpip.Address{}, tcpip.AddrFrom4(voidPeer.As4()), header.IPv4ProtocolNumber, false)
		if terr != nil {
			b.Fatal(terr)
		}
		defer r.Release()
		data := buffer.MakeWithData(make([]byte, benchPayload+header.IPv4MinimumSize+header.UDPMinimumSize+HeaderLen))
		defer data.Release()
		b.ReportAllocs()
		for b.Loop() {
			pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: int(r.MaxHeaderLength()) + 8, Payload: data.Clone()})
			header.UDP(pkt.TransportHeader().Push(8)).Encode(&header.UDPFields{SrcPort: 1, DstPort: DefaultPort, Length: uint16(8 + data.Size())})
			pkt.TransportProtocolNumber = header.UDPProtocolNumber
			if err := r.WritePacket(gstack.NetworkHeaderParams{Protocol: header.UDPProtocolNumber, TTL: 64}, pkt); err != nil {
				b.Fatal(err)
			}
			pkt.DecRef()
		}
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
	tx := (*transmitter)(d)
	send := func() {
		if err := tx.Transmit(pkt); err != nil {
			t.Fatal(err)
		}
	}
	send() // warm the route cache
	r, terr := st.GVisor().FindRoute(0, tcpip.Address{}, tcpip.AddrFrom4(voidPeer.As4()), header.IPv4ProtocolNumber, false)
	if terr != nil {
		t.Fatal(terr)
	}
	defer r.Release()
	data := buffer.MakeWithData(make([]byte, pkt.Size()+HeaderLen))
	defer data.Release()
	outerOnly := func() {
		out := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: int(r.MaxHeaderLength()) + 8, Payload: data.Clone()})
		header.UDP(out.TransportHeader().Push(8)).Encode(&header.UDPFields{SrcPort: 1, DstPort: DefaultPort, Length: uint16(8 + data.Size())})
		out.TransportProtocolNumber = header.UDPProtocolNumber
		if err := r.WritePacket(gstack.NetworkHeaderParams{Protocol: header.UDPProtocolNumber, TTL: 64}, out); err != nil {
			t.Fatal(err)
		}
		out.DecRef()
	}
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
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

// countingDispatcher stands in for the inner stack: it counts what the
// device delivers.
type countingDispatcher struct{ n atomic.Uint64 }

func (c *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	c.n.Add(1)
}
func (c *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

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
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(cap(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(voidPeer.As4()), DstAddr: tcpip.AddrFrom4([4]byte{10, 99, 0, 1})})
	header.UDP(b[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: 40000, DstPort: DefaultPort, Length: uint16(header.UDPMinimumSize + len(payload))})
	return append(b, payload...)
}

// received returns wire as the UDP demux hands it to a transport endpoint.
func received(wire []byte) *stack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithView(buffer.NewViewWithData(wire))})
	pkt.NetworkHeader().Consume(header.IPv4MinimumSize)
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.TransportHeader().Consume(header.UDPMinimumSize)
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	return pkt
}

// tunnelEndpoint returns the transport endpoint of st's only tunnel socket.
func tunnelEndpoint(tb testing.TB, st *stack.Stack) gstack.TransportEndpoint {
	eps := st.GVisor().RegisteredEndpoints()
	if len(eps) == 0 {
		tb.Fatal("no tunnel socket registered")
	}
	for _, e := range eps {
		if e != eps[0] {
			tb.Fatalf("registered endpoints %v, want the tunnel socket alone", eps)
		}
	}
	return eps[0]
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
			var cd countingDispatcher
			st.GVisor().GetLinkEndpointByName(d.Name()).Attach(&cd)
			wire := datagram4(gpdu(42, ue4, benchPayload, mode == "pdu-session-container"))
			sockEP := tunnelEndpoint(b, st)
			b.ReportAllocs()
			for b.Loop() {
				pkt := received(wire)
				if mode != "packet-only" {
					sockEP.HandlePacket(gstack.TransportEndpointID{}, pkt)
				}
				pkt.DecRef()
			}
			if mode != "packet-only" && cd.n.Load() == 0 {
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
		var cd countingDispatcher
		st.GVisor().GetLinkEndpointByName(d.Name()).Attach(&cd)
		wire := datagram4(gpdu(42, ue4, 100, psc))
		sockEP := tunnelEndpoint(t, st)
		receive := func() {
			pkt := received(wire)
			sockEP.HandlePacket(gstack.TransportEndpointID{}, pkt)
			pkt.DecRef()
		}
		receive()
		if raceEnabled {
			t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
		}
		if n := testing.AllocsPerRun(1000, receive); n != 0 {
			t.Errorf("psc %v: decapsulation allocates %v times per packet, want 0", psc, n)
		}
		if got := cd.n.Load(); got != 1002 {
			t.Errorf("psc %v: delivered %d packets, want 1002", psc, got)
		}
	}
}
