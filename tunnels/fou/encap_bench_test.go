package fou

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link
// (the outer IP write included), decap from the tunnel socket's
// HandlePacket through the GUE or FOU encap, the stack's resubmit and the
// protocol handler to the device's dispatcher (the inner IP layer not run).

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

const benchPayload = 1400 // inner UDP payload: a 1428-byte inner IPv4 packet

// voidHost is a stack with an underlay that leads nowhere (10.99.0.1/24)
// and one socket of sc with a device of cfg towards 10.99.0.2.
func voidHost(tb testing.TB, sc SocketConfig, cfg Config) (*stack.Stack, *Socket, *Device) {
	st := tunneltest.VoidStack(tb)
	s, err := OpenSocket(st, sc)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Remote = netip.MustParseAddr("10.99.0.2")
	d, err := s.AddDevice(nil, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return st, s, d
}

// benchCases are the encapsulations measured.
var benchCases = []struct {
	name string
	sock SocketConfig
	dev  Config
}{
	{"fou-ipip", SocketConfig{Proto: ProtoIPIP}, Config{ZeroChecksum: true}},
	{"gue", SocketConfig{Type: TypeGUE}, Config{ZeroChecksum: true}},
	{"gre-in-udp", SocketConfig{Proto: ProtoGRE}, Config{ZeroChecksum: true, HasKey: true, Key: 42}},
}

// innerPacket builds an outbound inner IPv4/UDP packet as the inner stack
// hands it to the device: headroom from the device's MaxHeaderLength.
func innerPacket() *stack.PacketBuffer {
	return tunneltest.InnerIPv4(8+GUEHeaderLen+GREMaxHeaderLen+stack.DefaultOuterHeadroom, netip.AddrFrom4([4]byte{192, 168, 42, 1}), netip.AddrFrom4([4]byte{192, 168, 42, 2}), benchPayload)
}

// BenchmarkEncap is the device's transmit path for one 1428-byte inner
// IPv4 packet: flow source port, tunnel packet (no copy), GUE/GRE and UDP
// headers, route cache, outer IPv4 header and the underlay NIC write.
// "outer-ip-only" is the same outer write of a same-sized UDP datagram
// without the tunnel, to subtract (gVisor's outer write allocates twice:
// the NIC's packet list and, now and then, the IPv4 ID generator).
func BenchmarkEncap(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			_, _, d := voidHost(b, bc.sock, bc.dev)
			pkt := innerPacket()
			defer pkt.DecRef()
			tunneltest.Loop(b, tunneltest.Transmit(b, (*transmitter)(d), pkt))
		})
	}
	b.Run("outer-ip-only", func(b *testing.B) {
		st, _, _ := voidHost(b, benchCases[1].sock, benchCases[1].dev)
		tunneltest.Loop(b, tunneltest.OuterWrite(b, st, GUEPort, benchPayload+header.IPv4MinimumSize+header.UDPMinimumSize+GUEHeaderLen))
	})
}

// TestEncapNoAllocs guards the transmit path: encapsulating and sending
// allocates no more than gVisor's outer write of a plain UDP datagram of
// the same size does on its own (see BenchmarkEncap): the encapsulation
// itself allocates nothing.
func TestEncapNoAllocs(t *testing.T) {
	tunneltest.SkipIfRace(t)
	for _, bc := range benchCases {
		t.Run(bc.name, func(t *testing.T) {
			st, s, d := voidHost(t, bc.sock, bc.dev)
			pkt := innerPacket()
			defer pkt.DecRef()
			encap := tunneltest.Transmit(t, (*transmitter)(d), pkt)
			encap() // the route cache fills once
			outer := tunneltest.OuterWrite(t, st, GUEPort, benchPayload+header.IPv4MinimumSize+header.UDPMinimumSize+GUEHeaderLen)
			outer()
			base := testing.AllocsPerRun(1000, outer)
			if n := testing.AllocsPerRun(1000, encap); n > base {
				t.Errorf("encapsulation allocates %v times per packet, the outer write alone %v: want no more", n, base)
			}
			if got := s.Tunnel().Counters().Stats().TxPackets; got != 1002 {
				t.Errorf("socket sent %d datagrams, want 1002", got)
			}
		})
	}
}

// tunnelPayload returns the UDP payload the peer of a device of bc would
// send: the encapsulation header, then an inner IPv4 header and n bytes.
func tunnelPayload(sc SocketConfig, cfg Config, n int) []byte {
	inner := make([]byte, header.IPv4MinimumSize+n)
	header.IPv4(inner).Encode(&header.IPv4Fields{TotalLength: uint16(len(inner)), TTL: 64, Protocol: 253,
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 1})})
	var b []byte
	proto := uint8(ProtoIPIP)
	if sc.Proto == ProtoGRE || cfg.Proto == ProtoGRE {
		proto = uint8(ProtoGRE)
	}
	if sc.Type == TypeGUE {
		b = make([]byte, GUEHeaderLen)
		GUE(b).Encode(&GUEFields{Proto: proto})
	}
	if proto == uint8(ProtoGRE) {
		f := GREFields{Protocol: etherTypeIPv4, HasKey: cfg.HasKey, Key: cfg.Key}
		g := make([]byte, f.Len())
		GRE(g).Encode(&f)
		b = append(b, g...)
	}
	return append(b, inner...)
}

// datagram4 wraps payload in IPv4 and UDP from 10.99.0.2:40000 to
// 10.99.0.1:port (no UDP checksum, as IPv4 allows).
func datagram4(payload []byte, port uint16) []byte {
	return tunneltest.Datagram4(40000, port, payload)
}

// BenchmarkDecap is the receive path for one datagram carrying a 1428-byte
// inner IPv4 packet, from the UDP demux to the device's dispatcher: UDP
// checks, FOU/GUE encap, resubmit, handler (GRE header, device lookup),
// inner packet built and dispatched. "packet-only" builds and frees the
// same received packet without the tunnel, to subtract.
func BenchmarkDecap(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			st, s, d := voidHost(b, bc.sock, bc.dev)
			cd := tunneltest.Count(st, d.Name())
			wire := datagram4(tunnelPayload(bc.sock, bc.dev, header.UDPMinimumSize+benchPayload), s.Tunnel().LocalAddr().Port())
			sockEP := tunneltest.TunnelEndpoint(b, st)
			tunneltest.Loop(b, tunneltest.Receive(sockEP, wire))
			if cd.Delivered() == 0 {
				b.Fatalf("nothing was delivered: socket %v, device %v", s.Tunnel().Counters().Stats(), d.Counters().Stats())
			}
		})
	}
	b.Run("packet-only", func(b *testing.B) {
		wire := datagram4(tunnelPayload(benchCases[1].sock, benchCases[1].dev, header.UDPMinimumSize+benchPayload), GUEPort)
		b.ReportAllocs()
		for b.Loop() {
			tunneltest.Received(wire).DecRef()
		}
	})
}

// TestDecapNoAllocs guards the receive path: from the tunnel socket through
// the resubmit and the handler to the device's dispatcher, a datagram costs
// no allocation (the packet itself comes from gVisor's pools).
func TestDecapNoAllocs(t *testing.T) {
	for _, bc := range benchCases {
		t.Run(bc.name, func(t *testing.T) {
			st, s, d := voidHost(t, bc.sock, bc.dev)
			cd := tunneltest.Count(st, d.Name())
			wire := datagram4(tunnelPayload(bc.sock, bc.dev, 100), s.Tunnel().LocalAddr().Port())
			sockEP := tunneltest.TunnelEndpoint(t, st)
			receive := tunneltest.Receive(sockEP, wire)
			receive()
			tunneltest.SkipIfRace(t)
			if n := testing.AllocsPerRun(1000, receive); n != 0 {
				t.Errorf("decapsulation allocates %v times per packet, want 0", n)
			}
			if got := cd.Delivered(); got != 1002 {
				t.Errorf("delivered %d packets, want 1002 (socket %v, device %v)", got, s.Tunnel().Counters().Stats(), d.Counters().Stats())
			}
		})
	}
}
