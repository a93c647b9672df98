package bareudp

import (
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
)

// TestMPLSMulticast checks bareudp_udp_encap_recv's rule for MPLS devices:
// a datagram to a multicast outer address is MPLS multicast (0x8848),
// accepted only in multiproto mode, and dropped as DropPolicy otherwise.
// The outer destination is what decides, so Receive is called directly.
func TestMPLSMulticast(t *testing.T) {
	src := netip.AddrPortFrom(voidRemote, 40000)
	for _, tc := range []struct {
		name       string
		multiproto bool
		dst        string
		delivered  bool
	}{
		{"unicast", false, "10.99.0.1", true},
		{"multicast without multiproto", false, "239.1.2.3", false},
		{"multicast with multiproto", true, "239.1.2.3", true},
		{"IPv6 multicast with multiproto", true, "ff0e::1", true},
		{"IPv6 multicast without multiproto", false, "ff0e::1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mplsConfig()
			cfg.Multiproto = tc.multiproto
			st, s, d := voidHost(t, cfg)
			cd := tunneltest.Count(st, d.Name())
			pkt := tunneltest.Received(datagram4(labelled(innerIPv4(8), 1042)))
			defer pkt.DecRef()
			(*encap)(s).Receive(pkt, src, netip.AddrPortFrom(netip.MustParseAddr(tc.dst), MPLSPort))
			policy := s.Tunnel().Counters().Stats().Dropped(stack.DropPolicy)
			if got := cd.Delivered() == 1; got != tc.delivered || policy != map[bool]uint64{true: 0, false: 1}[tc.delivered] {
				t.Errorf("delivered %v, DropPolicy %d; want delivered %v", got, policy, tc.delivered)
			}
		})
	}
}

// TestDerivedMTU checks the inner MTU: the underlay's minus the outer IP
// header, UDP and the reserved label stack.
func TestDerivedMTU(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want uint32
	}{
		{"ip over IPv4", ipConfig(), 1500 - 20 - 8},
		{"mpls, one label, over IPv4", mplsConfig(), 1500 - 20 - 8 - 4},
		{"mpls, three labels reserved", func() Config { c := mplsConfig(); c.LabelDepth = 3; return c }(), 1500 - 20 - 8 - 12},
		{"mpls, deepest route", func() Config {
			c := mplsConfig()
			c.Routes = []Route{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Labels: []Label{16, 17}}}
			return c
		}(), 1500 - 20 - 8 - 8},
		{"ip over IPv6, underlay 9000", func() Config {
			c := ipConfig()
			c.Remote, c.UnderlayMTU = netip.MustParseAddr("fd00::2"), 9000
			return c
		}(), 9000 - 40 - 8},
		{"configured", func() Config { c := ipConfig(); c.MTU = 1280; return c }(), 1280},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, d := voidHost(t, tc.cfg)
			if got := d.InnerMTU(); got != tc.want {
				t.Errorf("MTU %d, want %d", got, tc.want)
			}
		})
	}
}
