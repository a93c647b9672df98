package l2tp

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack, as in the vxlan package: encap from the device's
// Transmit to the underlay link, decap from the tunnel socket's
// HandlePacket to the device's dispatcher.

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

const benchPayload = 1400 // inner UDP payload: a full 1500-byte inner frame

var testCookie = []byte{0xc0, 0x0c, 0x1e, 0x42}

// benchConfig is the e2e session: 4-byte cookies, sublayer, seq both.
func benchConfig() Config {
	return Config{ID: 42, PeerID: 42, Cookie: testCookie, PeerCookie: testCookie, L2Spec: L2SpecDefault, Seq: SeqBoth}
}

// voidHost is a stack with an underlay that leads nowhere (10.99.0.1/24)
// and an L2TP tunnel to 10.99.0.2 with one session configured by cfg.
func voidHost(tb testing.TB, cfg Config) (*stack.Stack, *Socket, *Device) {
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
	s, err := OpenSocket(st, SocketConfig{TunnelID: 1, PeerTunnelID: 1, Remote: netip.MustParseAddrPort("10.99.0.2:1701"), ZeroChecksum: true})
	if err != nil {
		tb.Fatal(err)
	}
	d, err := s.AddDevice(nil, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return st, s, d
}

// innerFrame builds an outbound inner packet as the inner stack hands it
// to the device: headroom reserved from the device's overhead, UDP, IPv4
// and Ethernet headers pushed.
func innerFrame(d *Device) *stack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: 8 + d.hdrLen() + stack.DefaultOuterHeadroom + header.EthernetMinimumSize + header.IPv4MinimumSize + header.UDPMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, benchPayload)),
	})
	udp := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
	udp.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 2000, Length: header.UDPMinimumSize + benchPayload})
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + header.UDPMinimumSize + benchPayload), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 1}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2})})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(d.MAC()), DstAddr: "\x02\x00\x00\x00\x00\x99", Type: header.IPv4ProtocolNumber})
	return pkt
}

// BenchmarkEncap is the session's transmit path for one 1500-byte inner
// frame: tunnel packet (no copy), L2TPv3 header with cookie and sequence
// number, UDP header, route cache, outer IPv4 header and the underlay NIC
// write. "outer-ip-only" is gVisor's outer write of a same-sized UDP
// datagram without the tunnel, to subtract (its 2 allocations per packet
// are gVisor's NIC queueing discipline, in both).
func BenchmarkEncap(b *testing.B) {
	st, _, d := voidHost(b, benchConfig())
	b.Run("l2tp", func(b *testing.B) {
		pkt := innerFrame(d)
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
		write, done := outerWrite(b, st, innerFrame(d).Size()+d.hdrLen())
		defer done()
		b.ReportAllocs()
		for b.Loop() {
			write()
		}
	})
}

// TestEncapNoAllocs guards the transmit path: encapsulating and sending a
// frame costs no allocation beyond what gVisor's own outer write of a
// same-sized UDP datagram costs (its NIC queueing discipline allocates a
// packet list per write, outside this package), measured alongside.
func TestEncapNoAllocs(t *testing.T) {
	st, s, d := voidHost(t, benchConfig())
	pkt := innerFrame(d)
	defer pkt.DecRef()
	tx := (*transmitter)(d)
	send := func() {
		if err := tx.Transmit(pkt); err != nil {
			t.Fatal(err)
		}
	}
	send() // the route cache fills once
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	baseline := outerWriteAllocs(t, st, pkt.Size()+d.hdrLen())
	n := testing.AllocsPerRun(1000, send)
	t.Logf("allocations per packet: encap and write %v, bare outer write %v", n, baseline)
	if n > baseline {
		t.Errorf("encapsulation allocates %v times per packet, gVisor's bare outer write %v: the tunnel adds %v", n, baseline, n-baseline)
	}
	if got := s.Tunnel().Counters().Stats().TxPackets; got != 1002 {
		t.Errorf("socket sent %d datagrams, want 1002", got)
	}
}

// outerWrite returns a function that writes one UDP datagram of n payload
// bytes to 10.99.0.2 through a cached route of st, as Xmit ends, and its
// cleanup.
func outerWrite(tb testing.TB, st *stack.Stack, n int) (write func(), done func()) {
	r, terr := st.GVisor().FindRoute(0, tcpip.Address{}, tcpip.AddrFrom4([4]byte{10, 99, 0, 2}), header.IPv4ProtocolNumber, false)
	if terr != nil {
		tb.Fatal(terr)
	}
	data := buffer.MakeWithData(make([]byte, n))
	write = func() {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: int(r.MaxHeaderLength()) + 8, Payload: data.Clone()})
		header.UDP(pkt.TransportHeader().Push(8)).Encode(&header.UDPFields{SrcPort: DefaultPort, DstPort: DefaultPort, Length: uint16(8 + data.Size())})
		pkt.TransportProtocolNumber = header.UDPProtocolNumber
		if err := r.WritePacket(gstack.NetworkHeaderParams{Protocol: header.UDPProtocolNumber, TTL: 64}, pkt); err != nil {
			tb.Fatal(err)
		}
		pkt.DecRef()
	}
	return write, func() { data.Release(); r.Release() }
}

// outerWriteAllocs measures the allocations of outerWrite.
func outerWriteAllocs(t *testing.T, st *stack.Stack, n int) float64 {
	write, done := outerWrite(t, st, n)
	defer done()
	return testing.AllocsPerRun(1000, write)
}

// countingDispatcher stands in for the inner stack: it counts what the
// device delivers.
type countingDispatcher struct{ n atomic.Uint64 }

func (c *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	c.n.Add(1)
}
func (c *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

// dataMessage returns an L2TPv3 data message for session id with cookie
// and, if seq >= 0, a sublayer with that sequence number, carrying an
// Ethernet header from src to dst (IPv4) and n zero bytes.
func dataMessage(id SessionID, cookie []byte, seq int, src, dst tcpip.LinkAddress, n int) []byte {
	f := Fields{SessionID: id, Cookie: cookie}
	if seq >= 0 {
		f.L2Spec, f.SeqValid, f.Seq = L2SpecDefault, true, uint32(seq)
	}
	b := make([]byte, f.Len()+header.EthernetMinimumSize+n)
	Header(b).Encode(&f)
	header.Ethernet(b[f.Len():]).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: dst, Type: header.IPv4ProtocolNumber})
	return b
}

// datagram4 wraps payload in IPv4 and UDP from 10.99.0.2:1701 to
// 10.99.0.1:1701 (no UDP checksum, as IPv4 allows).
func datagram4(payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(cap(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 99, 0, 2}), DstAddr: tcpip.AddrFrom4([4]byte{10, 99, 0, 1})})
	header.UDP(b[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: DefaultPort, DstPort: DefaultPort, Length: uint16(header.UDPMinimumSize + len(payload))})
	return append(b, payload...)
}

// received returns wire as the UDP demux hands it to a transport endpoint:
// a fresh buffer with the IPv4 and UDP headers parsed.
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
	return eps[0]
}

// decapHost returns a void host with the bench session whose device
// delivers into a counting dispatcher, and the socket's endpoint.
func decapHost(tb testing.TB, cfg Config) (*Socket, *Device, *countingDispatcher, gstack.TransportEndpoint) {
	st, s, d := voidHost(tb, cfg)
	var cd countingDispatcher
	st.GVisor().GetLinkEndpointByName(d.Name()).Attach(&cd)
	return s, d, &cd, tunnelEndpoint(tb, st)
}

// BenchmarkDecap is the receive path for one datagram carrying a
// 1500-byte inner frame, from the UDP demux to the inner Ethernet layer:
// UDP checks, L2TPv3 header, session lookup, cookie, sublayer and sequence
// check, headers consumed, inner packet built and dispatched. The sequence
// number increases with every packet, as a peer sends them.
func BenchmarkDecap(b *testing.B) {
	_, d, cd, ep := decapHost(b, benchConfig())
	wire := datagram4(dataMessage(42, testCookie, 0, "\x02\x00\x00\x00\x00\x99", tcpip.LinkAddress(d.MAC()), header.IPv4MinimumSize+header.UDPMinimumSize+benchPayload))
	seq := Header(wire[header.IPv4MinimumSize+header.UDPMinimumSize:]).Sublayer(4)
	var ns uint32
	b.ReportAllocs()
	for b.Loop() {
		seq.Encode(true, ns)
		ns++
		pkt := received(wire)
		ep.HandlePacket(gstack.TransportEndpointID{}, pkt)
		pkt.DecRef()
	}
	if cd.n.Load() == 0 {
		b.Fatal("nothing was delivered")
	}
}

// TestDecapNoAllocs guards the receive path: from the tunnel socket to the
// device's dispatcher, a datagram costs no allocation.
func TestDecapNoAllocs(t *testing.T) {
	_, d, cd, ep := decapHost(t, benchConfig())
	wire := datagram4(dataMessage(42, testCookie, 0, "\x02\x00\x00\x00\x00\x99", tcpip.LinkAddress(d.MAC()), 100))
	seq := Header(wire[header.IPv4MinimumSize+header.UDPMinimumSize:]).Sublayer(4)
	var ns uint32
	receive := func() {
		seq.Encode(true, ns)
		ns++
		pkt := received(wire)
		ep.HandlePacket(gstack.TransportEndpointID{}, pkt)
		pkt.DecRef()
	}
	receive()
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	if n := testing.AllocsPerRun(1000, receive); n != 0 {
		t.Errorf("decapsulation allocates %v times per packet, want 0", n)
	}
	if got := cd.n.Load(); got != 1002 {
		t.Errorf("delivered %d frames, want 1002 (device %v)", got, d.Counters().Stats())
	}
}
