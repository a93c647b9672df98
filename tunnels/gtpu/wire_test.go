package gtpu_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

// sniffHost is a stack whose underlay is a gVisor channel endpoint
// (10.99.0.1/24, fd00::1/64): the test reads every outer packet it sends.
func sniffHost(t *testing.T, cfg gtpu.Config) (*stack.Stack, *channel.Endpoint, *gtpu.Device) {
	t.Helper()
	ep := channel.New(64, 1500, "")
	st, _ := tunneltest.NewStack(t, ep, netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("fd00::1/64"))
	t.Cleanup(ep.Close)
	sock, err := gtpu.OpenSocket(st, gtpu.SocketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sock.AddDevice(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"192.168.42.1/24", "fd42::1/64"} {
		if err := st.AddAddress(d.NIC(), netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	return st, ep, d
}

// sent pings dst from st (no reply will come) and returns the outer
// packet the underlay got, decoded by gopacket (which finds the GTP-U
// layer by port 2152 only).
func sent(t *testing.T, st *stack.Stack, ep *channel.Endpoint, dst netip.Addr) gopacket.Packet {
	t.Helper()
	pingCtx, stopPing := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Ping(pingCtx, dst, 1, 56)
	}()
	defer func() { stopPing(); <-done }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		pkt := ep.ReadContext(ctx)
		if pkt == nil {
			t.Fatal("no outer packet")
		}
		b := pkt.ToView().AsSlice()
		first := layers.LayerTypeIPv4
		if b[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
		p := gopacket.NewPacket(append([]byte(nil), b...), first, gopacket.Default)
		pkt.DecRef()
		if p.Layer(layers.LayerTypeUDP) != nil {
			return p
		}
	}
}

// TestWireFormat checks the outer packets a device sends, decoded by
// gopacket: addresses, ports, TTL, TOS, DF, checksum and the G-PDU header
// (peer's TEID, Length covering the T-PDU), for each role and family.
func TestWireFormat(t *testing.T) {
	peer4, peer6 := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd00::2")
	for _, tc := range []struct {
		name     string
		cfg      gtpu.Config
		dst      netip.Addr
		srcPorts [2]uint16 // inclusive range
	}{
		{"ggsn ipv4 in ipv4, ttl tos df", gtpu.Config{TTL: 9, TOS: 0x28, DF: true, Sessions: []gtpu.Session{{LocalTEID: 1, RemoteTEID: 0xabcdef01, Peer: peer4, UE4: ue4, UE6: ue6}}},
			ue4, [2]uint16{49152, 65535}},
		{"ggsn ipv6 in ipv6, zero checksum, fixed port", gtpu.Config{ZeroChecksum: true, FixedSrcPort: true, Sessions: []gtpu.Session{{LocalTEID: 1, RemoteTEID: 7, Peer: peer6, UE4: ue4, UE6: ue6}}},
			ue6, [2]uint16{gtpu.DefaultPort, gtpu.DefaultPort}},
		{"sgsn ipv6 in ipv4, port range", gtpu.Config{Role: gtpu.RoleSGSN, SrcPortMin: 3000, SrcPortMax: 3010, Port: 2153,
			Sessions: []gtpu.Session{{LocalTEID: 1, RemoteTEID: 8, Peer: peer4, UE4: gw4, UE6: gw6}}},
			ue6, [2]uint16{3000, 3009}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, ep, d := sniffHost(t, tc.cfg)
			p := sent(t, st, ep, tc.dst)
			ss := tc.cfg.Sessions[0]
			var outerDst netip.Addr
			if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				outerDst, _ = netip.AddrFromSlice(ip.DstIP)
				if tc.cfg.TTL != 0 && ip.TTL != tc.cfg.TTL {
					t.Errorf("TTL %d, want %d", ip.TTL, tc.cfg.TTL)
				}
				if ip.TOS != tc.cfg.TOS {
					t.Errorf("TOS %#x, want %#x", ip.TOS, tc.cfg.TOS)
				}
				if df := ip.Flags&layers.IPv4DontFragment != 0; df != tc.cfg.DF {
					t.Errorf("DF %v, want %v", df, tc.cfg.DF)
				}
			} else if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
				outerDst, _ = netip.AddrFromSlice(ip.DstIP)
			}
			if outerDst != ss.Peer {
				t.Errorf("outer destination %v, want %v", outerDst, ss.Peer)
			}
			udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			wantPort := tc.cfg.Port
			if wantPort == 0 {
				wantPort = gtpu.DefaultPort
			}
			if uint16(udp.DstPort) != wantPort {
				t.Errorf("UDP destination port %d, want %d", udp.DstPort, wantPort)
			}
			if sp := uint16(udp.SrcPort); sp < tc.srcPorts[0] || sp > tc.srcPorts[1] {
				t.Errorf("UDP source port %d outside %v", sp, tc.srcPorts)
			}
			if (udp.Checksum == 0) != tc.cfg.ZeroChecksum {
				t.Errorf("UDP checksum %#x with ZeroChecksum %v", udp.Checksum, tc.cfg.ZeroChecksum)
			}
			g := &layers.GTPv1U{}
			if err := g.DecodeFromBytes(udp.Payload, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("gopacket: %v", err)
			}
			if g.Version != 1 || g.ProtocolType != 1 || g.MessageType != 255 || g.TEID != uint32(ss.RemoteTEID) ||
				g.SequenceNumberFlag || g.ExtensionHeaderFlag || g.NPDUFlag || int(g.MessageLength) != len(g.Payload) {
				t.Errorf("GTP-U header %+v (payload %d octets)", g, len(g.Payload))
			}
			inner := gopacket.NewPacket(g.Payload, map[bool]gopacket.LayerType{true: layers.LayerTypeIPv4, false: layers.LayerTypeIPv6}[tc.dst.Is4()], gopacket.Default)
			var innerDst netip.Addr
			if ip, ok := inner.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				innerDst, _ = netip.AddrFromSlice(ip.DstIP)
			} else if ip, ok := inner.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
				innerDst, _ = netip.AddrFromSlice(ip.DstIP)
			}
			if innerDst != tc.dst {
				t.Errorf("inner destination %v, want %v", innerDst, tc.dst)
			}
			if s := d.Counters().Stats(); s.TotalDrops() != 0 {
				t.Errorf("device drops: %v", s)
			}
		})
	}
}
