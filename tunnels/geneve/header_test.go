package geneve

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
)

var update = flag.Bool("update", false, "rewrite testdata/encap.pcap from the encoder")

// goldenRFC is a Geneve header assembled by hand from RFC 8926 §3.4 and §3.5,
// followed by a minimal inner Ethernet header.
var goldenRFC = []byte{
	0x04,       // Ver 0 (2 bits), Opt Len 4 (6 bits): 16 bytes of options
	0x40,       // O = 0, C = 1 (a critical option follows), Rsvd 0
	0x65, 0x58, // Protocol Type: Transparent Ethernet Bridging
	0x12, 0x34, 0x56, // VNI 0x123456
	0x00, // Reserved
	// Option 1 (§3.5): non-critical, 4 bytes of data.
	0x01, 0x02, // Option Class 0x0102
	0x03,                   // Type 0x03, critical bit clear
	0x01,                   // R R R = 0, Length 1 (4 bytes of data)
	0xde, 0xad, 0xbe, 0xef, // data
	// Option 2: critical, no data... and one more word to fill Opt Len.
	0xff, 0xff, // Option Class 0xffff (experimental)
	0x81,                   // Type 0x81: critical bit set, type 1
	0x01,                   // Length 1
	0xca, 0xfe, 0xf0, 0x0d, // data
	// Inner Ethernet: broadcast from 02:00:00:00:00:01, EtherType ARP.
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06,
}

func TestGoldenRFC(t *testing.T) {
	h, err := Parse(goldenRFC)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version() != 0 || h.OptLen() != 4 || h.Len() != 24 || h.OAM() || !h.Critical() ||
		h.Protocol() != ProtoTEB || h.VNI() != 0x123456 || h.Reserved() != 0 {
		t.Errorf("fields: ver %d optlen %d len %d oam %v crit %v proto %#x vni %#x rsvd %d",
			h.Version(), h.OptLen(), h.Len(), h.OAM(), h.Critical(), h.Protocol(), h.VNI(), h.Reserved())
	}
	var got []string
	for o := range h.Options().All() {
		got = append(got, fmt.Sprintf("%#04x/%#02x crit=%v len=%d % x", o.Class(), o.Type(), o.Critical(), o.DataLen(), o.Data()))
	}
	want := []string{"0x0102/0x03 crit=false len=4 de ad be ef", "0xffff/0x81 crit=true len=4 ca fe f0 0d"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("options %q, want %q", got, want)
	}
	if !bytes.Equal(h.Payload(), goldenRFC[24:]) {
		t.Errorf("payload % x", h.Payload())
	}
	if o, ok := h.Options().UnknownCritical([]OptionKey{{0x0102, 0x03}}); !ok || o.Key() != (OptionKey{0xffff, 0x81}) {
		t.Errorf("UnknownCritical = %v, %v; want option ffff/81", o, ok)
	}
	if _, ok := h.Options().UnknownCritical([]OptionKey{{0xffff, 0x81}}); ok {
		t.Error("UnknownCritical reports an understood option")
	}
	// gopacket agrees.
	var gn layers.Geneve
	if err := gn.DecodeFromBytes(goldenRFC, gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	checkAgreesWithGopacket(t, h, &gn)
	// Our encoder writes the same bytes from the parsed fields.
	out := make([]byte, h.Len())
	Header(out).Encode(&Fields{Protocol: h.Protocol(), VNI: h.VNI(), Options: h.Options()})
	if !bytes.Equal(out, goldenRFC[:24]) {
		t.Errorf("Encode:\n got % x\nwant % x", out, goldenRFC[:24])
	}
}

// checkAgreesWithGopacket compares our view with gopacket's decoding. Note
// gopacket v1.1.19's decoder reads Ver as 1 bit and an option's Length as 4
// bits (RFC 8926: 2 and 5), so callers only give it options shorter than 64
// bytes and version 0.
func checkAgreesWithGopacket(t *testing.T, h Header, gn *layers.Geneve) {
	t.Helper()
	if gn.Version != h.Version() || int(gn.OptionsLength) != 4*int(h.OptLen()) || gn.OAMPacket != h.OAM() ||
		gn.CriticalOption != h.Critical() || uint16(gn.Protocol) != h.Protocol() || gn.VNI != uint32(h.VNI()) {
		t.Errorf("gopacket %+v disagrees with ours (ver %d optlen %d oam %v crit %v proto %#x vni %d)",
			gn, h.Version(), h.OptLen(), h.OAM(), h.Critical(), h.Protocol(), h.VNI())
	}
	i := 0
	for o := range h.Options().All() {
		if i >= len(gn.Options) {
			t.Fatalf("gopacket found %d options, we more", len(gn.Options))
		}
		g := gn.Options[i]
		if g.Class != o.Class() || g.Type != o.Type() || int(g.Length) != OptionHeaderLen+o.DataLen() || !bytes.Equal(g.Data, o.Data()) {
			t.Errorf("option %d: gopacket %+v, ours %x/%x % x", i, g, o.Class(), o.Type(), o.Data())
		}
		i++
	}
	if i != len(gn.Options) {
		t.Errorf("gopacket found %d options, we %d", len(gn.Options), i)
	}
	if !bytes.Equal(gn.Payload, h.Payload()) {
		t.Errorf("gopacket payload differs")
	}
}

// geneveOf decodes an Ethernet frame with gopacket and returns its UDP
// layer, its Geneve layer, or fails.
func geneveOf(t *testing.T, frame []byte) (*layers.UDP, *layers.Geneve) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LinkTypeEthernet, gopacket.Default)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	gn, _ := p.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
	if udp == nil || gn == nil {
		t.Fatalf("gopacket found no UDP/Geneve in % x (%v)", frame, p.ErrorLayer())
	}
	return udp, gn
}

// TestGoldenPeerPcaps parses every frame of the captures that scapy and
// Open vSwitch 3.1 exchanged (VNI 4242, TEB, with and without one option
// of class 0xffff type 1), cross-checks each with gopacket and re-encodes
// the header from its fields.
func TestGoldenPeerPcaps(t *testing.T) {
	for _, tc := range []struct {
		file string
		opts []string // data of the one option, by frame parity
	}{
		{"geneve.pcap", nil},
		{"geneve-opt.pcap", []string{"deadbeef", "cafef00d"}},
	} {
		frames := tunneltest.ReadPcap(t, tc.file, tunneltest.LinkTypeEthernet)
		if len(frames) != 8 {
			t.Fatalf("%s: %d frames, want 8 (ARP, 3 pings, both ways)", tc.file, len(frames))
		}
		for i, f := range frames {
			t.Run(fmt.Sprintf("%s/frame%d", tc.file, i+1), func(t *testing.T) {
				udp, gn := geneveOf(t, f)
				if udp.DstPort != DefaultPort {
					t.Errorf("dst port %d", udp.DstPort)
				}
				h, err := Parse(udp.Payload)
				if err != nil {
					t.Fatal(err)
				}
				if h.VNI() != 4242 || h.Protocol() != ProtoTEB || h.OAM() || h.Critical() {
					t.Errorf("vni %d proto %#x oam %v crit %v", h.VNI(), h.Protocol(), h.OAM(), h.Critical())
				}
				checkAgreesWithGopacket(t, h, gn)
				var got []string
				for o := range h.Options().All() {
					if o.Key() != (OptionKey{0xffff, 0x01}) {
						t.Errorf("option %v", o.Key())
					}
					got = append(got, fmt.Sprintf("%x", o.Data()))
				}
				if tc.opts == nil && got != nil || tc.opts != nil && (len(got) != 1 || got[0] != tc.opts[i%2]) {
					t.Errorf("options %q, want %q", got, tc.opts)
				}
				out := make([]byte, h.Len())
				Header(out).Encode(&Fields{Protocol: h.Protocol(), VNI: h.VNI(), Options: h.Options()})
				if !bytes.Equal(out, udp.Payload[:h.Len()]) {
					t.Errorf("re-encoded % x, captured % x", out, udp.Payload[:h.Len()])
				}
			})
		}
	}
}

// encapFrames are our encoder's output for testdata/encap.pcap: the outer
// Ethernet/IPv4/UDP of frame 1 of geneve-opt.pcap around headers we encode.
func encapFrames(t *testing.T) [][]byte {
	t.Helper()
	peer := tunneltest.ReadPcap(t, "geneve-opt.pcap", tunneltest.LinkTypeEthernet)[0]
	const outer = 14 + 20 + 8
	inner := peer[outer+16:] // the ARP request behind the peer's header
	var out [][]byte
	opts, err := AppendOption(nil, 0xffff, 0x01, []byte{0xde, 0xad, 0xbe, 0xef})
	if err != nil {
		t.Fatal(err)
	}
	crit, err := AppendOption(append(Options(nil), opts...), 0x0102, 0x80|0x05, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Fields{
		{Protocol: ProtoTEB, VNI: 4242},
		{Protocol: ProtoTEB, VNI: 4242, Options: opts},
		{Protocol: ProtoTEB, VNI: 4242, Options: crit, OAM: true},
	} {
		g := make([]byte, HeaderLen+len(f.Options))
		Header(g).Encode(&f)
		frame := append(append(append([]byte(nil), peer[:outer]...), g...), inner...)
		// Fix the IPv4 total length and header checksum, the UDP length,
		// and drop the UDP checksum (0: none, as Open vSwitch sends).
		binary.BigEndian.PutUint16(frame[14+2:], uint16(len(frame)-14))
		frame[14+10], frame[14+11] = 0, 0
		binary.BigEndian.PutUint16(frame[14+10:], ^onesSum(frame[14:14+20]))
		binary.BigEndian.PutUint16(frame[14+20+4:], uint16(len(frame)-14-20))
		frame[14+20+6], frame[14+20+7] = 0, 0
		out = append(out, frame)
	}
	return out
}

func onesSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestGoldenEncapPcap checks our encoder's output against the committed
// testdata/encap.pcap (rewrite it with -update; "tshark -r
// testdata/encap.pcap -O geneve" decodes all three) and decodes it with
// gopacket.
func TestGoldenEncapPcap(t *testing.T) {
	frames := encapFrames(t)
	path := filepath.Join("testdata", "encap.pcap")
	if *update {
		if err := os.WriteFile(path, tunneltest.WritePcap(tunneltest.LinkTypeEthernet, frames...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden := tunneltest.ReadPcap(t, "encap.pcap", tunneltest.LinkTypeEthernet)
	if len(golden) != len(frames) {
		t.Fatalf("encap.pcap has %d frames, the encoder made %d", len(golden), len(frames))
	}
	for i, f := range frames {
		if !bytes.Equal(f, golden[i]) {
			t.Errorf("frame %d:\n got % x\nwant % x", i+1, f, golden[i])
		}
		udp, gn := geneveOf(t, golden[i])
		h, err := Parse(udp.Payload)
		if err != nil {
			t.Fatal(err)
		}
		checkAgreesWithGopacket(t, h, gn)
		if inner := gopacket.NewPacket(gn.Payload, layers.LinkTypeEthernet, gopacket.Default); inner.Layer(layers.LayerTypeARP) == nil {
			t.Errorf("frame %d: gopacket finds no inner ARP", i+1)
		}
	}
	if _, gn := geneveOf(t, golden[2]); !gn.OAMPacket || !gn.CriticalOption || len(gn.Options) != 2 || gn.Options[1].Type != 0x85 {
		t.Errorf("frame 3: gopacket reads %+v, want O, C and a critical second option", gn)
	}
}

func TestValidate(t *testing.T) {
	valid := append([]byte(nil), goldenRFC...)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, ErrTruncated},
		{"7 bytes", valid[:7], ErrTruncated},
		{"version 1", mod(func(b []byte) []byte { b[0] |= 0x40; return b }), ErrVersion},
		{"version 3", mod(func(b []byte) []byte { b[0] |= 0xc0; return b }), ErrVersion},
		{"options cut", valid[:20], ErrTruncated},
		{"opt len 63 on a short packet", mod(func(b []byte) []byte { b[0] = 63; return b }), ErrTruncated},
		{"option overruns opt len", mod(func(b []byte) []byte { b[8+3] = 2; return b }), ErrBadOption},
		{"last option overruns opt len", mod(func(b []byte) []byte { b[16+3] = 0x1f; return b }), ErrBadOption},
		{"opt len one word short", mod(func(b []byte) []byte { b[0] = 3; return b }), ErrBadOption},
		{"reserved bits ignored", mod(func(b []byte) []byte { b[1] |= 0x3f; b[7] = 0xff; b[8+3] |= 0xe0; return b }), nil},
		{"O bit", mod(func(b []byte) []byte { b[1] |= FlagOAM; return b }), nil},
		{"header only", []byte{0, 0, 0x65, 0x58, 0, 0, 1, 0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Parse(tc.b)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse = %v, want %v", err, tc.err)
			}
			if err != nil && h != nil {
				t.Error("Parse returned a header with an error")
			}
		})
	}
}

func TestAppendOption(t *testing.T) {
	var o Options
	var err error
	if o, err = AppendOption(o, 1, 2, []byte{1, 2, 3}); err != ErrOptionData || len(o) != 0 {
		t.Errorf("3 bytes of data: %v, %x", err, o)
	}
	if o, err = AppendOption(o, 1, 2, make([]byte, 128)); err != ErrOptionData {
		t.Errorf("128 bytes of data: %v", err)
	}
	if o, err = AppendOption(o, 1, 2, make([]byte, 124)); err != nil || len(o) != 128 || o[3] != 31 {
		t.Fatalf("124 bytes of data: %v, len %d, length field %d", err, len(o), o[3])
	}
	if o, err = AppendOption(o, 3, 4, make([]byte, 124)); err != ErrOptionsTooLong || len(o) != 128 {
		t.Errorf("beyond 252 bytes: %v, len %d", err, len(o))
	}
	if o, err = AppendOption(o, 3, 0x84, make([]byte, 120)); err != nil || len(o) != 252 {
		t.Fatalf("exactly 252 bytes: %v, len %d", err, len(o))
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if !o.HasCritical() {
		t.Error("HasCritical false")
	}
	if f, ok := o.Find(OptionKey{3, 0x84}); !ok || f.DataLen() != 120 {
		t.Errorf("Find: %v", ok)
	}
	if _, ok := o.Find(OptionKey{3, 0x04}); ok {
		t.Error("Find ignores the critical bit")
	}
	h := make(Header, MaxHeaderLen)
	h.Encode(&Fields{VNI: MaxVNI, Protocol: ProtoIPv6, Options: o})
	if h.OptLen() != 63 || !h.Critical() || h.Validate() != nil || h.VNI() != MaxVNI {
		t.Errorf("max header: optlen %d crit %v validate %v", h.OptLen(), h.Critical(), h.Validate())
	}
	// Next on a malformed tail.
	if _, _, err := Options([]byte{0, 1, 2}).Next(); err != ErrBadOption {
		t.Errorf("3-byte option: %v", err)
	}
}

func TestHeaderNoAllocs(t *testing.T) {
	buf := make([]byte, 0, MaxOptionsLen)
	out := make(Header, MaxHeaderLen)
	data := []byte{1, 2, 3, 4}
	n := testing.AllocsPerRun(100, func() {
		h, err := Parse(goldenRFC)
		if err != nil {
			t.Fatal(err)
		}
		for o := range h.Options().All() {
			_ = o.Key()
		}
		_, _ = h.Options().UnknownCritical([]OptionKey{{1, 2}})
		opts, _ := AppendOption(buf[:0], 0xffff, 1, data)
		out.Encode(&Fields{VNI: h.VNI(), Protocol: h.Protocol(), Options: opts})
	})
	if n != 0 {
		t.Errorf("header operations allocate %v times, want 0", n)
	}
}
