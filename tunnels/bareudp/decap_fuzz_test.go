package bareudp

import (
	"fmt"
	"testing"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FuzzDecap feeds arbitrary UDP payloads to a live bareudp socket, in IP
// mode (IPv4 with multiproto) or MPLS mode (local label 1042), with the
// inner stack attached, and checks that nothing panics and that every
// datagram is accounted for exactly once: dropped by the socket with a
// reason, dropped by the device with a reason, or delivered by the device.
func FuzzDecap(f *testing.F) {
	type host struct {
		s *Socket
		d *Device
		// handle is the socket's transport endpoint.
		handle gstack.TransportEndpoint
	}
	var hosts [2]host // [0] IP mode, [1] MPLS mode
	for i, cfg := range []Config{ipConfig(), mplsConfig()} {
		st, s, d := voidHost(f, cfg)
		hosts[i] = host{s, d, tunneltest.TunnelEndpoint(f, st)}
	}
	in := innerIPv4(8)
	f.Add(false, []byte{})                                 // IP: empty datagram, truncated
	f.Add(false, in)                                       // IP: an IPv4/UDP packet, delivered
	f.Add(false, []byte{0x60, 0, 0, 0, 0, 0, 17, 64})      // IP: a truncated IPv6 header, multiproto delivers it
	f.Add(false, []byte{0x50, 0, 0, 0})                    // IP: version 5, bad header
	f.Add(true, []byte{})                                  // MPLS: empty, truncated
	f.Add(true, labelled(in, 1042))                        // MPLS: our label over IPv4, delivered
	f.Add(true, labelled(in, 1042, LabelIPv4ExplicitNull)) // MPLS: our label, then IPv4 explicit null
	f.Add(true, labelled(in, LabelIPv6ExplicitNull))       // MPLS: IPv6 explicit null over IPv4, bad header
	f.Add(true, labelled(in, 2000))                        // MPLS: a label not ours
	f.Add(true, labelled(in, LabelEntropyIndicator, 77, 1042))
	f.Add(true, []byte{0, 0x41, 0, 64})            // MPLS: label 1042 without S, truncated
	f.Add(true, labelled(nil, 1042))               // MPLS: a stack with no payload
	f.Add(true, labelled(in, LabelImplicitNull))   // MPLS: implicit null on the wire
	f.Add(true, []byte{0x00, 0x41, 0x21, 0x01, 0}) // MPLS: label 1042 with TTL 1

	accounted := func(h host) uint64 {
		ss, ds := h.s.Tunnel().Counters().Stats(), h.d.Counters().Stats()
		return ss.TotalDrops() + ds.RxPackets + ds.TotalDrops()
	}
	f.Fuzz(func(t *testing.T, mpls bool, payload []byte) {
		if len(payload) > tunneltest.MaxFuzzPayload {
			return
		}
		h := hosts[0]
		if mpls {
			h = hosts[1]
		}
		tunneltest.AccountedOnce(t, h.handle, datagram4(payload), func() uint64 { return accounted(h) }, func() string {
			return fmt.Sprintf("socket %v, device %v", h.s.Tunnel().Counters().Stats(), h.d.Counters().Stats())
		})
	})
}
