package geneve_test

// Metadata mode both ways: options and flags that the receive hook sees,
// OAM handed to the hook and never delivered, and what the device sends
// (TxOptions, SetTxOptions, SendFrame, the L3 protocol type) decoded by
// gopacket from the outer packet on the wire.

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/geneve"
)

// received is one call of a receive hook, copied out of the call.
type received struct {
	md    geneve.Metadata
	opts  []byte
	frame []byte
}

func TestReceiveHook(t *testing.T) {
	h := newInjectHost(t)
	var got []received
	d := h.addDevice(t, geneve.Config{VNI: 42, Remote: peer4,
		Options: []geneve.OptionKey{{Class: 0xffff, Type: 0x81}},
		OnReceive: func(md geneve.Metadata, frame []byte) {
			got = append(got, received{md: md, opts: bytes.Clone(md.Options), frame: bytes.Clone(frame)})
		}}, "192.168.42.2/24")
	frame := ethFrame(tcpip.LinkAddress(d.MAC()))
	opts := []byte{0xff, 0xff, 0x81, 1, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0}

	for _, v6 := range []bool{false, true} {
		got = nil
		before := d.Counters().Stats()
		// A data packet: the hook sees it, then it is delivered.
		h.inject(v6, slices.Concat(rawHeader(3, geneve.FlagCritical, geneve.ProtoTEB, 42, opts...), frame))
		// An OAM packet: the hook sees it, it is not delivered.
		h.inject(v6, slices.Concat(rawHeader(0, geneve.FlagOAM, geneve.ProtoTEB, 42), frame))
		// An unknown critical option: dropped before the hook.
		h.inject(v6, slices.Concat(rawHeader(1, geneve.FlagCritical, geneve.ProtoTEB, 42, 0, 1, 0x80, 0), frame))
		if len(got) != 2 {
			t.Fatalf("v6=%v: hook called %d times, want 2", v6, len(got))
		}
		src, dst := peer4, self4
		if v6 {
			src, dst = peer6, self6
		}
		md := got[0].md
		if md.VNI != 42 || md.Src != netip.AddrPortFrom(src, 40000) || md.Dst != netip.AddrPortFrom(dst, geneve.DefaultPort) ||
			md.TOS != 0x28 || md.TTL != 64 || md.OAM || !md.Critical || md.Protocol != geneve.ProtoTEB {
			t.Errorf("v6=%v: data metadata %+v", v6, md)
		}
		if !bytes.Equal(got[0].opts, opts) || !bytes.Equal(got[0].frame, frame) {
			t.Errorf("v6=%v: options % x frame % x", v6, got[0].opts, got[0].frame)
		}
		if !got[1].md.OAM || len(got[1].opts) != 0 || !bytes.Equal(got[1].frame, frame) {
			t.Errorf("v6=%v: OAM call %+v", v6, got[1])
		}
		dd := tunneltest.Since(before, d.Counters())
		// Rx: the data packet and the OAM one handed to the hook; one
		// policy drop.
		if dd.Rx != 2 || len(dd.Drops) != 1 || dd.Drops[stack.DropPolicy] != 1 {
			t.Errorf("v6=%v: device %v", v6, dd)
		}
	}
}

// wireGeneve decodes an outer IP packet with gopacket and returns its UDP
// and Geneve layers.
func wireGeneve(t *testing.T, b []byte) (*layers.UDP, *layers.Geneve) {
	t.Helper()
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(b, first, gopacket.Default)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	gn, _ := p.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
	if udp != nil && gn == nil {
		// gopacket decodes Geneve only on port 6081: decode by hand.
		gn = new(layers.Geneve)
		if err := gn.DecodeFromBytes(udp.Payload, gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
	}
	if udp == nil || gn == nil {
		t.Fatalf("gopacket finds no UDP/Geneve in % x", b)
	}
	return udp, gn
}

func TestTransmitOptions(t *testing.T) {
	h := newInjectHost(t)
	opt1, _ := geneve.AppendOption(nil, 0xffff, 0x01, []byte{0xde, 0xad, 0xbe, 0xef})
	d := h.addDevice(t, geneve.Config{VNI: 4242, Remote: peer4, TxOptions: opt1, TxOptionsRoom: 16, TTL: 9, TOS: 0x10, DF: geneve.DFSet},
		"192.168.42.2/24")
	if err := h.st.AddRoute(netip.MustParsePrefix("192.168.42.0/24"), netip.Addr{}, d.NIC()); err != nil {
		t.Fatal(err)
	}
	// A ping to an inner neighbour makes the device send an ARP request.
	send := func() []byte {
		h.ep.Drain()
		go h.st.Ping(t.Context(), netip.MustParseAddr("192.168.42.7"), 1, 8)
		return h.sent(t)
	}
	b := send()
	udp, gn := wireGeneve(t, b)
	ip := header.IPv4(b)
	if ip.TTL() != 9 || ip.Flags()&header.IPv4FlagDontFragment == 0 || udp.DstPort != geneve.DefaultPort || udp.SrcPort < 32768 || udp.SrcPort >= 61000 {
		t.Errorf("outer: ttl %d flags %#x ports %d->%d", ip.TTL(), ip.Flags(), udp.SrcPort, udp.DstPort)
	}
	if tos, _ := ip.TOS(); tos != 0x10 {
		t.Errorf("outer TOS %#x", tos)
	}
	if gn.VNI != 4242 || gn.Protocol != layers.EthernetTypeTransparentEthernetBridging || gn.CriticalOption || len(gn.Options) != 1 ||
		gn.Options[0].Class != 0xffff || gn.Options[0].Type != 1 || !bytes.Equal(gn.Options[0].Data, []byte{0xde, 0xad, 0xbe, 0xef}) {
		t.Errorf("gopacket reads %+v", gn)
	}
	if arp := gopacket.NewPacket(gn.Payload, layers.LinkTypeEthernet, gopacket.Default).Layer(layers.LayerTypeARP); arp == nil {
		t.Error("no inner ARP request")
	}

	// New options, one critical: the C bit follows.
	opt2, _ := geneve.AppendOption(nil, 0x0102, 0x85, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err := d.SetTxOptions(opt2); err != nil {
		t.Fatal(err)
	}
	if err := d.SetTxOptions(make(geneve.Options, 20)); !errors.Is(err, stack.ErrInvalid) {
		t.Errorf("SetTxOptions beyond the room: %v", err)
	}
	if err := d.SetTxOptions(geneve.Options{0, 1, 2, 3}); !errors.Is(err, stack.ErrInvalid) {
		t.Errorf("SetTxOptions with a malformed option: %v", err)
	}
	_, gn = wireGeneve(t, send())
	if !gn.CriticalOption || len(gn.Options) != 1 || gn.Options[0].Type != 0x85 || len(gn.Options[0].Data) != 8 {
		t.Errorf("after SetTxOptions gopacket reads %+v", gn)
	}

	// SendFrame: per-packet options, OAM, another destination and TTL.
	h.ep.Drain()
	frame := slices.Concat([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 9, 0x88, 0xb5}, []byte("oam probe"))
	err := d.SendFrame(geneve.Metadata{OAM: true, Options: opt1, TTL: 3, Dst: netip.AddrPortFrom(netip.MustParseAddr("10.99.0.77"), 7000)}, frame)
	if err != nil {
		t.Fatal(err)
	}
	b = h.sent(t)
	udp, gn = wireGeneve(t, b)
	if header.IPv4(b).TTL() != 3 || header.IPv4(b).DestinationAddress() != tcpip.AddrFrom4([4]byte{10, 99, 0, 77}) || udp.DstPort != 7000 {
		t.Errorf("SendFrame outer: ttl %d dst %v port %d", header.IPv4(b).TTL(), header.IPv4(b).DestinationAddress(), udp.DstPort)
	}
	if !gn.OAMPacket || gn.CriticalOption || gn.VNI != 4242 || len(gn.Options) != 1 || !bytes.Equal(gn.Options[0].Data, []byte{0xde, 0xad, 0xbe, 0xef}) || !bytes.Equal(gn.Payload, frame) {
		t.Errorf("SendFrame: gopacket reads %+v", gn)
	}
	if err := d.SendFrame(geneve.Metadata{Options: make(geneve.Options, 20)}, frame); !errors.Is(err, stack.ErrInvalid) {
		t.Errorf("SendFrame with options beyond the room: %v", err)
	}
	if err := d.SendFrame(geneve.Metadata{}, frame[:10]); !errors.Is(err, stack.ErrInvalid) {
		t.Errorf("SendFrame of a runt: %v", err)
	}
}

// TestL3Transmit checks that an L3 device's protocol type is the inner
// packet's (innerprotoinherit), and "df inherit": DF copied from inner
// IPv4, always set for inner IPv6.
func TestL3Transmit(t *testing.T) {
	h := newInjectHost(t)
	d := h.addDevice(t, geneve.Config{VNI: 43, Remote: peer4, InnerProtoInherit: true, DF: geneve.DFInherit}, "192.168.43.2/24", "fd43::2/64")
	v4df := ipv4Packet()
	header.IPv4(v4df).SetFlagsFragmentOffset(header.IPv4FlagDontFragment, 0)
	for _, tc := range []struct {
		name   string
		packet []byte
		proto  layers.EthernetType
		df     bool
	}{
		{"IPv4", ipv4Packet(), layers.EthernetTypeIPv4, false},
		{"IPv4 with DF", v4df, layers.EthernetTypeIPv4, true},
		{"IPv6", ipv6Packet(), layers.EthernetTypeIPv6, true},
	} {
		h.ep.Drain()
		if err := d.SendFrame(geneve.Metadata{}, tc.packet); err != nil {
			t.Fatal(err)
		}
		b := h.sent(t)
		_, gn := wireGeneve(t, b)
		if gn.Protocol != tc.proto || gn.VNI != 43 || len(gn.Options) != 0 || !bytes.Equal(gn.Payload, tc.packet) {
			t.Errorf("%s: gopacket reads %+v", tc.name, gn)
		}
		if df := header.IPv4(b).Flags()&header.IPv4FlagDontFragment != 0; df != tc.df {
			t.Errorf("%s: outer DF %v, want %v (df inherit)", tc.name, df, tc.df)
		}
	}
	// The inner stack's own packets take the same path.
	h.ep.Drain()
	go h.st.Ping(t.Context(), netip.MustParseAddr("fd43::9"), 1, 8)
	if _, gn := wireGeneve(t, h.sent(t)); gn.Protocol != layers.EthernetTypeIPv6 {
		t.Errorf("ping over L3: protocol %v", gn.Protocol)
	}
	if err := d.SendFrame(geneve.Metadata{}, []byte{0x50, 0, 0, 0}); !errors.Is(err, stack.ErrUnsupported) {
		t.Errorf("SendFrame of a version-5 packet on an L3 device: %v", err)
	}
}
