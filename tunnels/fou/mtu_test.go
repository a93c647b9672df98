package fou_test

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

// TestDerivedMTU: a device's MTU is the underlay's minus the outer IP and
// UDP headers and its own encapsulation, as the kernel's ip_tunnel_bind_dev
// computes it with the encap's header length (fou_encap_hlen,
// gue_encap_hlen).
func TestDerivedMTU(t *testing.T) {
	r4, r6 := netip.MustParseAddr("10.99.0.9"), netip.MustParseAddr("fd00:99::9")
	for _, tc := range []struct {
		name string
		sock fou.SocketConfig
		cfg  fou.Config
		want uint32
	}{
		{"fou ipip over IPv4", fou.SocketConfig{Proto: fou.ProtoIPIP}, fou.Config{Remote: r4}, 1500 - 20 - 8},
		{"fou ipv6 over IPv6", fou.SocketConfig{Proto: fou.ProtoIPv6}, fou.Config{Remote: r6}, 1500 - 40 - 8},
		{"gue over IPv4", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{Remote: r4}, 1500 - 20 - 8 - 4},
		{"gue over IPv6, 9000 underlay", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{Remote: r6, UnderlayMTU: 9000}, 9000 - 40 - 8 - 4},
		{"gre-in-udp", fou.SocketConfig{Proto: fou.ProtoGRE}, fou.Config{Remote: r4}, 1500 - 20 - 8 - 4},
		{"gre-in-udp keyed with checksum", fou.SocketConfig{Proto: fou.ProtoGRE}, fou.Config{Remote: r4, HasKey: true, GRECsum: true}, 1500 - 20 - 8 - 12},
		{"gre in gue keyed", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{Remote: r4, Proto: fou.ProtoGRE, HasKey: true}, 1500 - 20 - 8 - 4 - 8},
		{"configured", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{Remote: r4, MTU: 1280}, 1280},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := stack.New(stack.Options{})
			defer st.Close()
			if _, err := st.AddNIC(channel.New(4, 1500, ""), stack.NICOptions{}); err != nil {
				t.Fatal(err)
			}
			s, err := fou.OpenSocket(st, tc.sock)
			if err != nil {
				t.Fatal(err)
			}
			d, err := s.AddDevice(nil, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.InnerMTU(); got != tc.want {
				t.Errorf("MTU %d, want %d", got, tc.want)
			}
		})
	}
}
