package geneve

// Encapsulation and decapsulation measured at the hook boundaries, without
// the inner stack: encap from the device's Transmit to the underlay link,
// decap from the tunnel socket's HandlePacket to the device's dispatcher.
// The allocation guards TestEncapNoAllocs and TestDecapNoAllocs use the
// same helpers.

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

// benchOption is a 4-byte-data option in the experimental class 0xffff.
var benchOption = Options{0xff, 0xff, 0x01, 0x01, 0xde, 0xad, 0xbe, 0xef}

// voidHost is a stack with an underlay that leads nowhere (10.99.0.1/24)
// and a Geneve socket with one device configured by cfg.
func voidHost(tb testing.TB, cfg Config) (*stack.Stack, *Socket, *Device) {
	st := tunneltest.VoidStack(tb)
	s, err := OpenSocket(st, SocketConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	d, err := s.AddDevice(nil, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return st, s, d
}

// benchConfig is an L2 device for VNI 42 towards 10.99.0.2 that sends and
// understands one option.
func benchConfig() Config {
	return Config{VNI: 42, Remote: netip.MustParseAddr("10.99.0.2"), ZeroChecksum: true,
		TxOptions: benchOption, Options: []OptionKey{{Class: 0xffff, Type: 0x01}}}
}

// innerFrame builds an outbound inner packet as the inner stack hands it
// to an L2 device: headroom reserved, UDP, IPv4 and Ethernet pushed.
func innerFrame(d *Device) *stack.PacketBuffer {
	return tunneltest.InnerFrame(int(maxHeaderLength(d)), tcpip.LinkAddress(d.MAC()), benchPayload)
}

// maxHeaderLength returns the headroom d's link endpoint asks the inner
// stack to reserve.
func maxHeaderLength(d *Device) uint16 {
	return d.Stack().GVisor().GetLinkEndpointByName(d.Name()).MaxHeaderLength()
}

// BenchmarkEncap is the device's transmit path for one 1500-byte inner
// frame with one 8-byte option: flow source port, tunnel packet (no copy),
// Geneve header and option, UDP header, route cache, outer IPv4 header and
// the underlay NIC write.
func BenchmarkEncap(b *testing.B) {
	st, _, d := voidHost(b, benchConfig())
	pkt := innerFrame(d)
	defer pkt.DecRef()
	b.Run("geneve", func(b *testing.B) {
		tunneltest.Loop(b, tunneltest.Transmit(b, (*transmitter)(d), pkt))
	})
	// The same outer write without the tunnel, to subtract.
	b.Run("outer-ip-only", func(b *testing.B) {
		tunneltest.Loop(b, tunneltest.OuterWrite(b, st, DefaultPort, pkt.Size()+HeaderLen+len(benchOption)))
	})
}

// TestEncapNoAllocs guards the transmit path: encapsulating and sending a
// frame allocates nothing beyond what gVisor's outer IP write of the same
// datagram allocates by itself (its queueing discipline allocates a packet
// list per write, and IPv4 refills its ID generator now and then).
func TestEncapNoAllocs(t *testing.T) {
	st, s, d := voidHost(t, benchConfig())
	pkt := innerFrame(d)
	defer pkt.DecRef()
	send := tunneltest.Transmit(t, (*transmitter)(d), pkt)
	send()
	base := tunneltest.OuterWrite(t, st, DefaultPort, pkt.Size()+HeaderLen+len(benchOption))
	base()
	tunneltest.SkipIfRace(t)
	const runs = 4096
	tunnel, outer := testing.AllocsPerRun(runs, send), testing.AllocsPerRun(runs, base)
	if tunnel > outer {
		t.Errorf("encapsulation allocates %v times per packet, gVisor's outer write alone %v: the tunnel adds %v, want 0", tunnel, outer, tunnel-outer)
	}
	if got := s.Tunnel().Counters().Stats().TxPackets; got != runs+2 {
		t.Errorf("socket sent %d datagrams, want %d", got, runs+2)
	}
}

// geneveFrame returns a Geneve header for vni with opts and an inner
// Ethernet header from src to dst carrying IPv4, followed by n zero bytes.
func geneveFrame(vni VNI, opts Options, src, dst tcpip.LinkAddress, n int) []byte {
	hl := HeaderLen + len(opts)
	b := make([]byte, hl+header.EthernetMinimumSize+n)
	Header(b).Encode(&Fields{VNI: vni, Protocol: ProtoTEB, Options: opts})
	header.Ethernet(b[hl:]).Encode(&header.EthernetFields{SrcAddr: src, DstAddr: dst, Type: header.IPv4ProtocolNumber})
	return b
}

// datagram4 wraps payload in IPv4 and UDP from 10.99.0.2:40000 to
// 10.99.0.1:6081 (no UDP checksum, as IPv4 allows).
func datagram4(payload []byte) []byte {
	return tunneltest.Datagram4(40000, DefaultPort, payload)
}

// decapHost is voidHost with benchConfig, its device's dispatcher replaced
// by a counter, and the datagram it receives in the benchmarks: a 1500-byte
// inner frame behind a Geneve header with one understood option.
func decapHost(tb testing.TB, cfg Config) (*tunneltest.CountingDispatcher, gstack.TransportEndpoint, []byte) {
	st, _, d := voidHost(tb, cfg)
	cd := tunneltest.Count(st, d.Name())
	wire := datagram4(geneveFrame(42, benchOption, "\x02\x00\x00\x00\x00\x99", tcpip.LinkAddress(d.MAC()), header.IPv4MinimumSize+header.UDPMinimumSize+benchPayload))
	return cd, tunneltest.TunnelEndpoint(tb, st), wire
}

// BenchmarkDecap is the receive path for one datagram carrying a 1500-byte
// inner frame and one option, from the UDP demux to the inner Ethernet
// layer: UDP checks, Geneve header and option walk, VNI lookup, protocol
// and critical-option policy, header consumed, inner packet dispatched.
// "metadata" adds the receive hook.
func BenchmarkDecap(b *testing.B) {
	for _, mode := range []string{"plain", "metadata"} {
		b.Run(mode, func(b *testing.B) {
			cfg := benchConfig()
			var seen int
			if mode == "metadata" {
				cfg.OnReceive = func(md Metadata, frame []byte) { seen += len(md.Options) }
			}
			cd, ep, wire := decapHost(b, cfg)
			tunneltest.Loop(b, tunneltest.Receive(ep, wire))
			if cd.Delivered() == 0 {
				b.Fatal("nothing was delivered")
			}
		})
	}
}

// TestDecapNoAllocs guards the receive path, with and without the metadata
// hook: from the tunnel socket to the device's dispatcher a datagram costs
// no allocation.
func TestDecapNoAllocs(t *testing.T) {
	for _, hook := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "metadata"}[hook], func(t *testing.T) {
			cfg := benchConfig()
			var opts int
			if hook {
				cfg.OnReceive = func(md Metadata, frame []byte) {
					for o := range md.Options.All() {
						opts += o.DataLen()
					}
				}
			}
			cd, ep, wire := decapHost(t, cfg)
			receive := tunneltest.Receive(ep, wire)
			receive()
			tunneltest.SkipIfRace(t)
			if n := testing.AllocsPerRun(1000, receive); n != 0 {
				t.Errorf("decapsulation allocates %v times per packet, want 0", n)
			}
			if got := cd.Delivered(); got != 1002 {
				t.Errorf("delivered %d frames, want 1002", got)
			}
			if hook && opts != 1002*4 {
				t.Errorf("hook saw %d option data bytes, want %d", opts, 1002*4)
			}
		})
	}
}
