package geneve

import (
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

// FuzzDecap feeds arbitrary UDP payloads to a Geneve socket with two
// devices, an L2 one for VNI 42 (inner stack attached, understanding option
// ffff/81, with a metadata hook) and an L3 one for VNI 43, and checks that
// nothing panics and that every datagram is accounted for exactly once:
// dropped by the socket with a reason, dropped by a device with a reason,
// or received by a device (delivered, or handed to the hook as OAM). More
// seeds are in testdata/fuzz/FuzzDecap.
func FuzzDecap(f *testing.F) {
	hooked := 0
	st, s, d := voidHost(f, Config{VNI: 42, Remote: netip.MustParseAddr("10.99.0.2"),
		Options: []OptionKey{{0xffff, 0x81}}, OnReceive: func(md Metadata, frame []byte) {
			for o := range md.Options.All() {
				hooked += len(o.Data())
			}
			hooked += len(frame)
		}})
	d3, err := s.AddDevice(nil, Config{VNI: 43, Remote: netip.MustParseAddr("10.99.0.2"), InnerProtoInherit: true})
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range []struct {
		nic stack.NICID
		pfx string
	}{{d.NIC(), "192.168.42.1/24"}, {d3.NIC(), "192.168.43.1/24"}} {
		if err := st.AddAddress(p.nic, netip.MustParsePrefix(p.pfx)); err != nil {
			f.Fatal(err)
		}
	}
	ep := tunneltest.TunnelEndpoint(f, st)
	mac := tcpip.LinkAddress(d.MAC())

	ipv4 := make([]byte, header.IPv4MinimumSize+8)
	header.IPv4(ipv4).Encode(&header.IPv4Fields{TotalLength: uint16(len(ipv4)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 1})})
	header.IPv4(ipv4).SetChecksum(^header.IPv4(ipv4).CalculateChecksum())
	l2 := func(flags uint8, opts Options) []byte {
		b := geneveFrame(42, opts, "\x02\xaa\x00\x00\x00\x01", mac, 0)
		b[1] |= flags
		return append(b, ipv4...)
	}
	l3 := func(proto uint16, inner []byte) []byte {
		b := make([]byte, HeaderLen, HeaderLen+len(inner))
		Header(b).Encode(&Fields{VNI: 43, Protocol: proto})
		return append(b, inner...)
	}
	crit := Options{0xff, 0xff, 0x81, 0x00}
	unknownCrit := Options{0x01, 0x02, 0x83, 0x00}

	f.Add([]byte{})                                // empty: truncated
	f.Add([]byte{0, 0, 0x65, 0x58})                // half a header: truncated
	f.Add(l2(0, nil))                              // a valid L2 frame for us with IPv4/UDP
	f.Add(l2(0, benchOption))                      // with a non-critical option the device ignores
	f.Add(l2(FlagCritical, crit))                  // a critical option the device understands
	f.Add(l2(FlagCritical, unknownCrit))           // a critical option it does not: policy drop
	f.Add(l2(FlagOAM, nil))                        // OAM: to the hook, never delivered
	f.Add(l3(ProtoIPv4, ipv4))                     // an L3 IPv4 packet for VNI 43
	f.Add(l3(ProtoIPv6, ipv4))                     // protocol IPv6 with an IPv4 packet: bad header
	f.Add(l3(ProtoTEB, ipv4))                      // TEB on an L3 device: not for us
	f.Add(l3(ProtoIPv4, nil))                      // L3 header without a packet: truncated
	f.Add(append([]byte{0x02}, l2(0, nil)[1:]...)) // Opt Len 2 over an Ethernet header: bad or odd options
	f.Add(append([]byte{0x80}, l2(0, nil)[1:]...)) // version 2

	accounted := func() uint64 {
		n := s.Tunnel().Counters().Stats().TotalDrops()
		for _, dev := range []*Device{d, d3} {
			ds := dev.Counters().Stats()
			n += ds.RxPackets + ds.TotalDrops()
		}
		return n
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > tunneltest.MaxFuzzPayload {
			return
		}
		tunneltest.AccountedOnce(t, ep, datagram4(payload), accounted, func() string {
			return fmt.Sprintf("socket %v, L2 %v, L3 %v", s.Tunnel().Counters().Stats(), d.Counters().Stats(), d3.Counters().Stats())
		})
	})
}
