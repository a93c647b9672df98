package l2tp

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack, as in the vxlan package: encap from the device's
// Transmit to the underlay link, decap from the tunnel socket's
// HandlePacket to the device's dispatcher.

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
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
	st := tunneltest.VoidStack(tb)
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
	return tunneltest.InnerFrame(8+d.hdrLen()+stack.DefaultOuterHeadroom+header.EthernetMinimumSize, tcpip.LinkAddress(d.MAC()), benchPayload)
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
		tunneltest.Loop(b, tunneltest.Transmit(b, (*transmitter)(d), pkt))
	})
	b.Run("outer-ip-only", func(b *testing.B) {
		tunneltest.Loop(b, tunneltest.OuterWrite(b, st, DefaultPort, innerFrame(d).Size()+d.hdrLen()))
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
	send := tunneltest.Transmit(t, (*transmitter)(d), pkt)
	send() // the route cache fills once
	tunneltest.SkipIfRace(t)
	baseline := testing.AllocsPerRun(1000, tunneltest.OuterWrite(t, st, DefaultPort, pkt.Size()+d.hdrLen()))
	n := testing.AllocsPerRun(1000, send)
	t.Logf("allocations per packet: encap and write %v, bare outer write %v", n, baseline)
	if n > baseline {
		t.Errorf("encapsulation allocates %v times per packet, gVisor's bare outer write %v: the tunnel adds %v", n, baseline, n-baseline)
	}
	if got := s.Tunnel().Counters().Stats().TxPackets; got != 1002 {
		t.Errorf("socket sent %d datagrams, want 1002", got)
	}
}

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
	return tunneltest.Datagram4(DefaultPort, DefaultPort, payload)
}

// decapHost returns a void host with the bench session whose device
// delivers into a counting dispatcher, and the socket's endpoint.
func decapHost(tb testing.TB, cfg Config) (*Socket, *Device, *tunneltest.CountingDispatcher, gstack.TransportEndpoint) {
	st, s, d := voidHost(tb, cfg)
	cd := tunneltest.Count(st, d.Name())
	return s, d, cd, tunneltest.TunnelEndpoint(tb, st)
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
		pkt := tunneltest.Received(wire)
		ep.HandlePacket(gstack.TransportEndpointID{}, pkt)
		pkt.DecRef()
	}
	if cd.Delivered() == 0 {
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
		pkt := tunneltest.Received(wire)
		ep.HandlePacket(gstack.TransportEndpointID{}, pkt)
		pkt.DecRef()
	}
	receive()
	tunneltest.SkipIfRace(t)
	if n := testing.AllocsPerRun(1000, receive); n != 0 {
		t.Errorf("decapsulation allocates %v times per packet, want 0", n)
	}
	if got := cd.Delivered(); got != 1002 {
		t.Errorf("delivered %d frames, want 1002 (device %v)", got, d.Counters().Stats())
	}
}
