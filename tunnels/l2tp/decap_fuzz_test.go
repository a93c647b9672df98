package l2tp

import (
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

// FuzzDecap feeds arbitrary UDP payloads to an L2TP tunnel with session 42
// (4-byte cookie, sublayer, seq both; inner stack attached) and checks that
// nothing panics and that every datagram is accounted for exactly once:
// dropped by the socket with a reason, passed to the control plane's UDP
// queue, dropped by the session's device with a reason, or delivered.
// Extra seeds are in testdata/fuzz/FuzzDecap, named for what they exercise.
func FuzzDecap(f *testing.F) {
	st, s, d := voidHost(f, benchConfig())
	if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("192.168.42.1/24")); err != nil {
		f.Fatal(err)
	}
	ep := tunneltest.TunnelEndpoint(f, st)
	mac := tcpip.LinkAddress(d.MAC())
	peer := tcpip.LinkAddress("\x02\xaa\x00\x00\x00\x01")
	ipv4 := make([]byte, header.IPv4MinimumSize+8)
	header.IPv4(ipv4).Encode(&header.IPv4Fields{TotalLength: uint16(len(ipv4)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 1})})
	header.IPv4(ipv4).SetChecksum(^header.IPv4(ipv4).CalculateChecksum())
	withIP := func(b []byte) []byte { return append(b[:len(b):len(b)], ipv4...) }

	f.Add([]byte{})                                                            // empty: truncated
	f.Add([]byte{0x00, 0x03, 0x00})                                            // 3 bytes: truncated
	f.Add(withIP(dataMessage(42, testCookie, 0, peer, mac, 0)))                // valid, seq 0, IPv4/UDP for us
	f.Add(withIP(dataMessage(42, testCookie, 5000, peer, mac, 0)))             // valid, a forward jump
	f.Add(withIP(dataMessage(42, []byte{0, 0, 0, 0}, 1, peer, mac, 0)))        // cookie mismatch
	f.Add(withIP(dataMessage(42, testCookie, -1, peer, mac, 0)[:12]))          // no sublayer: truncated
	f.Add(withIP(dataMessage(43, testCookie, 1, peer, mac, 0)))                // unknown session: to the control plane
	f.Add(withIP(dataMessage(0, nil, -1, peer, mac, 0)))                       // session 0: to the control plane
	f.Add([]byte{0xc8, 0x03, 0x00, 0x0c, 0, 0, 0, 1, 0, 0, 0, 0})              // control message
	f.Add([]byte{0x00, 0x02, 0x00, 0x00, 0, 0, 0, 42})                         // version 2 data: bad header
	f.Add(dataMessage(42, testCookie, 2, peer, "\x02\x00\x00\x00\x00\x09", 0)) // frame for another MAC
	f.Add(dataMessage(42, testCookie, 3, peer, mac, 0)[:16+13])                // inner frame one byte short of Ethernet

	accounted := func() uint64 {
		ss, ds := s.Tunnel().Counters().Stats(), d.Counters().Stats()
		// A passed datagram the full queue then drops is counted twice.
		return ss.TotalDrops() - ss.Dropped(stack.DropQueueFull) + s.Tunnel().Counters().Stats().Passed + ds.RxPackets + ds.TotalDrops()
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > tunneltest.MaxFuzzPayload {
			return
		}
		tunneltest.AccountedOnce(t, ep, datagram4(payload), accounted, func() string {
			return fmt.Sprintf("socket %v, passed %d, device %v", s.Tunnel().Counters().Stats(), s.Tunnel().Counters().Stats().Passed, d.Counters().Stats())
		})
	})
}
