package bareudp

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link
// (the outer IP write included), decap from the tunnel socket's
// HandlePacket to the device's dispatcher (the inner IP layer not run).

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

// voidRemote is the remote of voidHost's devices, on its underlay subnet.
var voidRemote = netip.MustParseAddr("10.99.0.2")

// mplsConfig is the MPLS device the internal tests use: label 1042 both
// ways.
func mplsConfig() Config {
	return Config{EtherType: EtherTypeMPLSUnicast, Remote: voidRemote, Labels: []Label{1042}, LocalLabels: []Label{1042}, ZeroChecksum: true}
}

// ipConfig is the IP-in-UDP device the internal tests use.
func ipConfig() Config {
	return Config{EtherType: EtherTypeIPv4, Multiproto: true, Remote: voidRemote, ZeroChecksum: true}
}

// voidHost is a stack with an underlay that leads nowhere (10.99.0.1/24)
// and a bareudp socket on MPLSPort with one device configured by cfg.
func voidHost(tb testing.TB, cfg Config) (*stack.Stack, *Socket, *Device) {
	st := tunneltest.VoidStack(tb)
	s, err := OpenSocket(st, SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, MPLSPort)})
	if err != nil {
		tb.Fatal(err)
	}
	d, err := s.AddDevice(nil, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return st, s, d
}

// innerPacket builds an outbound inner IPv4/UDP packet as the inner stack
// hands it to the device: headroom reserved from the device's
// MaxHeaderLength, UDP and IPv4 headers pushed.
func innerPacket() *stack.PacketBuffer {
	return tunneltest.InnerIPv4(8+4*EntryLen+stack.DefaultOuterHeadroom, netip.AddrFrom4([4]byte{192, 168, 42, 1}), netip.AddrFrom4([4]byte{192, 168, 42, 2}), benchPayload)
}

// innerIPv4 returns an IPv4/UDP packet from 192.168.42.2 to 192.168.42.1
// carrying n zero bytes.
func innerIPv4(n int) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+n)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 1})})
	ip.SetChecksum(^ip.CalculateChecksum())
	header.UDP(b[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: 2000, DstPort: 1000, Length: uint16(header.UDPMinimumSize + n)})
	return b
}

// labelled returns payload behind a label stack of labels (TTL 64).
func labelled(payload []byte, labels ...Label) []byte {
	b := make([]byte, len(labels)*EntryLen, len(labels)*EntryLen+len(payload))
	LabelStack(b).Encode(labels, 0, 64)
	return append(b, payload...)
}

// datagram4 wraps payload in IPv4 and UDP from 10.99.0.2:40000 to
// 10.99.0.1:6635 (no UDP checksum, as IPv4 allows).
func datagram4(payload []byte) []byte {
	return tunneltest.Datagram4(40000, MPLSPort, payload)
}

var modes = []struct {
	name string
	cfg  func() Config
	wire func() []byte // a received datagram (outer IPv4/UDP included)
}{
	{"ip", ipConfig, func() []byte { return datagram4(innerIPv4(benchPayload)) }},
	{"mpls", mplsConfig, func() []byte { return datagram4(labelled(innerIPv4(benchPayload), 1042)) }},
}

// BenchmarkEncap is the device's transmit path for one inner packet of
// 1428 bytes: flow source port, tunnel packet (no copy), label stack (MPLS),
// UDP header, route cache, outer IPv4 header and the underlay NIC write
// ("transmit"; gVisor's outer write allocates twice per packet, for every
// protocol); "encap-only" is bareudp's part alone, up to Socket.Xmit.
func BenchmarkEncap(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			_, _, d := voidHost(b, m.cfg())
			pkt := innerPacket()
			defer pkt.DecRef()
			b.Run("transmit", func(b *testing.B) {
				tunneltest.Loop(b, tunneltest.Transmit(b, (*transmitter)(d), pkt))
			})
			b.Run("encap-only", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					out, err := d.encapsulate(pkt)
					if err != nil {
						b.Fatal(err)
					}
					_ = d.xmitParams(pkt)
					out.DecRef()
				}
			})
		})
	}
}

// BenchmarkDecap is the receive path for one datagram, from the UDP demux
// to the device's dispatcher: UDP checks, source check, version nibble or
// label stack walk, labels consumed, inner packet built and dispatched.
func BenchmarkDecap(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			st, _, d := voidHost(b, m.cfg())
			cd := tunneltest.Count(st, d.Name())
			wire := m.wire()
			sockEP := tunneltest.TunnelEndpoint(b, st)
			tunneltest.Loop(b, tunneltest.Receive(sockEP, wire))
			if cd.Delivered() == 0 {
				b.Fatal("nothing was delivered")
			}
		})
	}
}

// TestEncapNoAllocs guards bareudp's part of the transmit path: the outer
// packet, its label stack and the outer header fields (flow source port)
// cost no allocation in either mode. The outer IP write after it
// (stack.Socket.Xmit) is gVisor's and allocates for every protocol (see
// BenchmarkEncap); it is left out.
func TestEncapNoAllocs(t *testing.T) {
	tunneltest.SkipIfRace(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			_, _, d := voidHost(t, m.cfg())
			pkt := innerPacket()
			defer pkt.DecRef()
			var ports uint64
			if n := testing.AllocsPerRun(1000, func() {
				out, err := d.encapsulate(pkt)
				if err != nil {
					t.Fatal(err)
				}
				ports += uint64(d.xmitParams(pkt).SrcPort)
				out.DecRef()
			}); n != 0 {
				t.Errorf("encapsulation allocates %v times per packet, want 0", n)
			}
			if ports == 0 {
				t.Error("no source port picked")
			}
		})
	}
}

// TestDecapNoAllocs guards the receive path: from the tunnel socket to the
// device's dispatcher, a datagram costs no allocation in either mode.
func TestDecapNoAllocs(t *testing.T) {
	tunneltest.SkipIfRace(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			st, _, d := voidHost(t, m.cfg())
			cd := tunneltest.Count(st, d.Name())
			wire := m.wire()
			sockEP := tunneltest.TunnelEndpoint(t, st)
			if n := testing.AllocsPerRun(1000, func() {
				pkt := tunneltest.Received(wire)
				sockEP.HandlePacket(gstack.TransportEndpointID{}, pkt)
				pkt.DecRef()
			}); n != 0 {
				t.Errorf("decapsulation allocates %v times per packet, want 0", n)
			}
			if got := cd.Delivered(); got != 1001 {
				t.Errorf("delivered %d packets, want 1001", got)
			}
		})
	}
}
