package vxlan

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzDecap feeds arbitrary UDP payloads to a VXLAN socket with a device
// for VNI 42 (learning on, inner stack attached) and checks that nothing
// panics and that every datagram is accounted for exactly once: dropped by
// the socket with a reason, dropped by the device with a reason, or
// delivered by the device.
func FuzzDecap(f *testing.F) {
	st, s, d := voidHost(f, Config{VNI: 42, Remotes: []netip.Addr{netip.MustParseAddr("10.99.0.2")}, Learning: true, MaxEntries: 64})
	if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("192.168.42.1/24")); err != nil {
		f.Fatal(err)
	}
	sockEP := tunneltest.TunnelEndpoint(f, st)
	mac := d.MAC()

	frame := func(vni VNI, flags uint8, dst []byte, etherType uint16, rest []byte) []byte {
		b := make([]byte, HeaderLen+header.EthernetMinimumSize, HeaderLen+header.EthernetMinimumSize+len(rest))
		Header(b).Encode(&Fields{VNI: vni})
		b[0] = flags
		copy(b[HeaderLen:], dst)
		copy(b[HeaderLen+6:], []byte{0x02, 0xaa, 0, 0, 0, 1})
		b[HeaderLen+12], b[HeaderLen+13] = byte(etherType>>8), byte(etherType)
		return append(b, rest...)
	}
	ipv4 := make([]byte, header.IPv4MinimumSize+8)
	header.IPv4(ipv4).Encode(&header.IPv4Fields{TotalLength: uint16(len(ipv4)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 1})})
	header.IPv4(ipv4).SetChecksum(^header.IPv4(ipv4).CalculateChecksum())
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	f.Add([]byte{})                                                        // empty datagram: truncated
	f.Add([]byte{0x08, 0, 0, 0})                                           // half a header: truncated
	f.Add(frame(42, 0x08, mac, 0x0800, ipv4))                              // a valid frame for us carrying IPv4/UDP
	f.Add(frame(42, 0x08, bcast, 0x0806, make([]byte, 28)))                // a broadcast ARP frame of zeros
	f.Add(frame(43, 0x08, mac, 0x0800, ipv4))                              // unknown VNI
	f.Add(frame(42, 0x00, mac, 0x0800, ipv4))                              // I flag clear
	f.Add(frame(42, 0x0c, mac, 0x0800, ipv4))                              // a reserved flag set (GPE's P bit)
	f.Add(frame(42, 0x08, []byte{2, 0, 0, 0, 0, 9}, 0x0800, ipv4))         // unicast for another MAC
	f.Add(frame(42, 0x08, mac, 0x86dd, []byte{0x60, 0, 0, 0, 0xff, 0xff})) // truncated IPv6
	f.Add(frame(42, 0x08, []byte{1, 0, 0x5e, 0, 0, 1}, 0x0800, ipv4))      // multicast destination
	f.Add(frame(42, 0x08, mac, 0x0800, nil)[:HeaderLen+13])                // an inner frame one byte short of an Ethernet header

	accounted := func() uint64 {
		ss, ds := s.Tunnel().Counters().Stats(), d.Counters().Stats()
		return ss.TotalDrops() + ds.RxPackets + ds.TotalDrops()
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > tunneltest.MaxFuzzPayload {
			return
		}
		tunneltest.AccountedOnce(t, sockEP, datagram4(payload), accounted, func() string {
			return fmt.Sprintf("socket %v, device %v", s.Tunnel().Counters().Stats(), d.Counters().Stats())
		})
	})
}
