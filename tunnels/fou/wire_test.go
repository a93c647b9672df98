package fou_test

// What the devices put on the wire, decoded by gopacket.

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

// TestWireDecodedByGopacket sends one inner UDP datagram through a device
// whose underlay is a channel endpoint and decodes the outer packet that
// comes out with gopacket: ports, GUE fields, GRE fields and checksum, and
// the inner packet.
func TestWireDecodedByGopacket(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sock  fou.SocketConfig
		dev   fou.Config
		inner netip.AddrPort
		check func(t *testing.T, udp *layers.UDP)
	}{
		{"gue inner IPv6", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{}, netip.MustParseAddrPort("[fd00:42::2]:7"),
			func(t *testing.T, udp *layers.UDP) {
				h, err := fou.ParseGUE(udp.Payload)
				if err != nil || h.Variant() != 0 || h.Control() || h.Proto() != 41 || h.HeaderLen() != 4 {
					t.Fatalf("GUE header % x: %v", udp.Payload[:4], err)
				}
				p := gopacket.NewPacket(h.Payload(), layers.LayerTypeIPv6, gopacket.Default)
				if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); !ok || u.DstPort != 7 || string(u.Payload) != "hello" {
					t.Errorf("inner packet: %v", p)
				}
			}},
		{"gre-in-udp inner IPv4", fou.SocketConfig{Proto: fou.ProtoGRE}, fou.Config{HasKey: true, Key: 77, GRECsum: true}, netip.MustParseAddrPort("192.168.42.2:7"),
			func(t *testing.T, udp *layers.UDP) {
				if udp.DstPort != fou.GREPort {
					t.Errorf("destination port %d", udp.DstPort)
				}
				p := gopacket.NewPacket(udp.Payload, layers.LayerTypeGRE, gopacket.Default)
				g, ok := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
				if !ok || !g.ChecksumPresent || !g.KeyPresent || g.Key != 77 || g.SeqPresent || g.Protocol != layers.EthernetTypeIPv4 || g.Version != 0 {
					t.Fatalf("GRE layer %+v", g)
				}
				if greChecksum(udp.Payload) != 0 {
					t.Errorf("GRE checksum does not verify")
				}
				if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); !ok || u.DstPort != 7 || string(u.Payload) != "hello" {
					t.Errorf("inner packet: %v", p)
				}
			}},
		{"fou-ipip fixed source port", fou.SocketConfig{Proto: fou.ProtoIPIP}, fou.Config{EncapSport: 1234, EncapDport: 9999, TTL: 9, TOS: 0x20}, netip.MustParseAddrPort("192.168.42.2:7"),
			func(t *testing.T, udp *layers.UDP) {
				if udp.SrcPort != 1234 || udp.DstPort != 9999 {
					t.Errorf("ports %d -> %d, want 1234 -> 9999", udp.SrcPort, udp.DstPort)
				}
				p := gopacket.NewPacket(udp.Payload, layers.LayerTypeIPv4, gopacket.Default)
				if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); !ok || string(u.Payload) != "hello" {
					t.Errorf("inner packet: %v", p)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := channel.New(16, 1500, "")
			st, _ := tunneltest.NewStack(t, ep, netip.MustParsePrefix("10.99.0.1/24"))
			s, err := fou.OpenSocket(st, tc.sock)
			if err != nil {
				t.Fatal(err)
			}
			cfg := tc.dev
			cfg.Remote = netip.MustParseAddr("10.99.0.2")
			d, err := s.AddDevice(nil, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"192.168.42.1/24", "fd00:42::1/64"} {
				if err := st.AddAddress(d.NIC(), netip.MustParsePrefix(p)); err != nil {
					t.Fatal(err)
				}
			}
			tunneltest.SendUDPFrom(t, st, netip.Addr{}, tc.inner, []byte("hello"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pkt := ep.ReadContext(ctx)
			if pkt == nil {
				t.Fatal("nothing on the wire")
			}
			wire := pkt.ToView().AsSlice()
			pkt.DecRef()
			p := gopacket.NewPacket(wire, layers.LayerTypeIPv4, gopacket.Default)
			ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if ip == nil || udp == nil {
				t.Fatalf("gopacket: %v", p)
			}
			if ip.SrcIP.String() != "10.99.0.1" || ip.DstIP.String() != "10.99.0.2" {
				t.Errorf("outer %v -> %v", ip.SrcIP, ip.DstIP)
			}
			if cfg.TTL != 0 && (ip.TTL != cfg.TTL || ip.TOS != cfg.TOS) {
				t.Errorf("outer TTL %d TOS %#x, want %d %#x", ip.TTL, ip.TOS, cfg.TTL, cfg.TOS)
			}
			tc.check(t, udp)
		})
	}
}
