package fou_test

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
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

var update = flag.Bool("update", false, "rewrite testdata/fou.pcap from the golden packets")

// goldenGUEv0 is an ICMP echo request in GUE variant 0 over IPv4, assembled
// by hand from draft-ietf-intarea-gue-09 §3.1 (frame 1 of testdata/fou.pcap).
var goldenGUEv0 = []byte{
	// Outer IPv4 (RFC 791): version 4, IHL 5, TOS 0, total length 60, ID 1,
	// DF, TTL 64, protocol 17 (UDP), header checksum, 10.99.0.1 -> 10.99.0.2.
	0x45, 0x00, 0x00, 0x3c, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x25, 0xe8,
	0x0a, 0x63, 0x00, 0x01, 0x0a, 0x63, 0x00, 0x02,
	// UDP: source port 49152, destination port 6080 (GUE), length 40,
	// checksum 0 (none, allowed over IPv4).
	0xc0, 0x00, 0x17, 0xc0, 0x00, 0x28, 0x00, 0x00,
	// GUE: Ver 00, C 0, Hlen 00000 (no extensions); Proto/ctype 4 (IPIP);
	// Flags 0.
	0x00, 0x04, 0x00, 0x00,
	// Inner IPv4: total length 28, ID 2, TTL 64, protocol 1 (ICMP),
	// checksum, 192.168.42.1 -> 192.168.42.2.
	0x45, 0x00, 0x00, 0x1c, 0x00, 0x02, 0x00, 0x00, 0x40, 0x01, 0xa5, 0x8b,
	0xc0, 0xa8, 0x2a, 0x01, 0xc0, 0xa8, 0x2a, 0x02,
	// ICMP echo request: type 8, code 0, checksum, identifier 7, sequence 1.
	0x08, 0x00, 0xf7, 0xf7, 0x00, 0x07, 0x00, 0x01,
}

// goldenGUEv1 is an IPv6 packet in GUE variant 1 (no GUE header, §4) over
// IPv6 (frame 2 of testdata/fou.pcap).
var goldenGUEv1 = []byte{
	// Outer IPv6 (RFC 8200): version 6, traffic class 0, flow label 0,
	// payload length 48, next header 17 (UDP), hop limit 64,
	// fd00:99::1 -> fd00:99::2.
	0x60, 0x00, 0x00, 0x00, 0x00, 0x30, 0x11, 0x40,
	0xfd, 0x00, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	0xfd, 0x00, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
	// UDP: 49153 -> 6080, length 48, checksum (mandatory over IPv6).
	0xc0, 0x01, 0x17, 0xc0, 0x00, 0x30, 0x96, 0xcc,
	// Inner IPv6, which is the GUE variant 1 "header": its first two bits
	// 01 are GUE's version, the next two (10) make it IPv6. Payload length
	// 0, next header 59 (none), hop limit 64, fd00:42::1 -> fd00:42::2.
	0x60, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3b, 0x40,
	0xfd, 0x00, 0x00, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	0xfd, 0x00, 0x00, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
}

// goldenGREinUDP is an IPv6 packet in keyed, checksummed GRE in UDP (RFC
// 8086) over IPv4 (frame 3 of testdata/fou.pcap).
var goldenGREinUDP = []byte{
	// Outer IPv4: total length 80, ID 3, DF, TTL 64, UDP,
	// 10.99.0.1 -> 10.99.0.2.
	0x45, 0x00, 0x00, 0x50, 0x00, 0x03, 0x40, 0x00, 0x40, 0x11, 0x25, 0xd2,
	0x0a, 0x63, 0x00, 0x01, 0x0a, 0x63, 0x00, 0x02,
	// UDP: 49154 -> 4754 (GRE-in-UDP), length 60, checksum 0.
	0xc0, 0x02, 0x12, 0x92, 0x00, 0x3c, 0x00, 0x00,
	// GRE (RFC 2784 §2, RFC 2890 §2): C=1 K=1 S=0, reserved0 0, version 0;
	// protocol type 0x86DD (IPv6).
	0xa0, 0x00, 0x86, 0xdd,
	// Checksum over GRE header and payload; reserved1 0.
	0x43, 0x2e, 0x00, 0x00,
	// Key 42.
	0x00, 0x00, 0x00, 0x2a,
	// Inner IPv6: no next header, fd00:42::1 -> fd00:42::2.
	0x60, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3b, 0x40,
	0xfd, 0x00, 0x00, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	0xfd, 0x00, 0x00, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
}

var goldenFrames = [][]byte{goldenGUEv0, goldenGUEv1, goldenGREinUDP}

// udpPayload decodes a raw IP frame with gopacket and returns its UDP layer.
func udpLayer(t *testing.T, frame []byte) *layers.UDP {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LinkTypeRaw, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok {
		t.Fatalf("gopacket finds no UDP in % x", frame)
	}
	return udp
}

// TestGoldenPcap checks that testdata/fou.pcap (LINKTYPE_RAW) holds the
// golden frames; with -update it writes them. Open it with
// `tshark -r testdata/fou.pcap -d udp.port==6080,gue -V` to see the fields.
func TestGoldenPcap(t *testing.T) {
	path := filepath.Join("testdata", "fou.pcap")
	if *update {
		if err := os.WriteFile(path, tunneltest.WritePcap(tunneltest.LinkTypeRaw, goldenFrames...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := tunneltest.ParsePcap(file, tunneltest.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != len(goldenFrames) {
		t.Fatalf("%d frames in %s, want %d", len(frames), path, len(goldenFrames))
	}
	for i := range frames {
		if !bytes.Equal(frames[i], goldenFrames[i]) {
			t.Errorf("frame %d differs from the golden packet:\n got % x\nwant % x", i+1, frames[i], goldenFrames[i])
		}
	}
}

func TestGoldenGUEVariant0(t *testing.T) {
	udp := udpLayer(t, goldenGUEv0)
	if udp.DstPort != fou.GUEPort {
		t.Fatalf("UDP destination port %d, want %d", udp.DstPort, fou.GUEPort)
	}
	h, err := fou.ParseGUE(udp.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if h.Variant() != 0 || h.Control() || h.HeaderLen() != 4 || h.Proto() != 4 || h.Flags() != 0 || h.InnerProto() != 4 {
		t.Errorf("GUE fields: variant %d control %v hlen %d proto %d flags %#x", h.Variant(), h.Control(), h.HeaderLen(), h.Proto(), h.Flags())
	}
	// gopacket has no GUE layer; it decodes what follows the header.
	inner := gopacket.NewPacket(h.Payload(), layers.LayerTypeIPv4, gopacket.Default)
	icmp, ok := inner.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ok || icmp.Id != 7 || icmp.Seq != 1 || icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest {
		t.Errorf("inner packet: %v", inner)
	}
	// Our encoder writes the same header.
	b := make([]byte, 4)
	fou.GUE(b).Encode(&fou.GUEFields{Proto: 4})
	if !bytes.Equal(b, udp.Payload[:4]) {
		t.Errorf("Encode wrote % x, want % x", b, udp.Payload[:4])
	}
}

func TestGoldenGUEVariant1(t *testing.T) {
	udp := udpLayer(t, goldenGUEv1)
	h, err := fou.ParseGUE(udp.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if h.Variant() != 1 || h.HeaderLen() != 0 || h.InnerProto() != 41 || len(h.Payload()) != 40 {
		t.Errorf("variant %d hlen %d inner proto %d payload %d bytes", h.Variant(), h.HeaderLen(), h.InnerProto(), len(h.Payload()))
	}
	inner := gopacket.NewPacket(h.Payload(), layers.LayerTypeIPv6, gopacket.Default)
	if ip, ok := inner.Layer(layers.LayerTypeIPv6).(*layers.IPv6); !ok || ip.DstIP.String() != "fd00:42::2" {
		t.Errorf("inner packet: %v", inner)
	}
}

// TestGoldenGREinUDP decodes the GRE header with our parser and with
// gopacket's layers.GRE, field by field.
func TestGoldenGREinUDP(t *testing.T) {
	udp := udpLayer(t, goldenGREinUDP)
	if udp.DstPort != fou.GREPort {
		t.Fatalf("UDP destination port %d, want %d", udp.DstPort, fou.GREPort)
	}
	h, err := fou.ParseGRE(udp.Payload)
	if err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(udp.Payload, layers.LayerTypeGRE, gopacket.Default)
	g, ok := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
	if !ok {
		t.Fatalf("gopacket: no GRE layer: %v", p)
	}
	checkGRE(t, h, g)
	if h.Key() != 42 || !h.HasChecksum() || h.HasSeq() || h.HeaderLen() != 12 || h.Protocol() != 0x86dd {
		t.Errorf("GRE fields: key %d csum %v seq %v len %d proto %#x", h.Key(), h.HasChecksum(), h.HasSeq(), h.HeaderLen(), h.Protocol())
	}
	if p.Layer(layers.LayerTypeIPv6) == nil {
		t.Errorf("gopacket does not find the inner IPv6 packet: %v", p)
	}
	// Our encoder, checksum included, writes the same header.
	b := make([]byte, len(udp.Payload))
	copy(b[12:], udp.Payload[12:])
	f := fou.GREFields{Protocol: 0x86dd, Checksum: true, HasKey: true, Key: 42}
	enc := fou.GRE(b)
	enc.Encode(&f)
	enc.SetChecksum(greChecksum(b))
	if !bytes.Equal(b, udp.Payload) {
		t.Errorf("Encode wrote\n % x\nwant\n % x", b, udp.Payload)
	}
}

// greChecksum computes RFC 2784's checksum of a GRE packet whose checksum
// field is zero, independently of the package (a plain RFC 1071 sum).
func greChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func checkGRE(t *testing.T, h fou.GRE, g *layers.GRE) {
	t.Helper()
	if g.ChecksumPresent != h.HasChecksum() || g.KeyPresent != h.HasKey() || g.SeqPresent != h.HasSeq() ||
		uint16(g.Protocol) != h.Protocol() || g.Version != 0 || g.Key != h.Key() || g.Seq != h.Seq() ||
		(h.HasChecksum() && g.Checksum != h.Checksum()) {
		t.Errorf("ours and gopacket disagree: ours csum=%v/%#x key=%v/%d seq=%v/%d proto %#x; gopacket %+v",
			h.HasChecksum(), h.Checksum(), h.HasKey(), h.Key(), h.HasSeq(), h.Seq(), h.Protocol(), g)
	}
}

// TestGREGopacketEncodeOursDecode serializes GRE headers with gopacket
// (checksum computed by it) and parses them with ParseGRE; and the other
// way round.
func TestGREGopacketRoundTrip(t *testing.T) {
	payload := goldenGREinUDP[20+8+12:]
	for _, f := range []fou.GREFields{
		{Protocol: 0x0800},
		{Protocol: 0x86dd, HasKey: true, Key: 0xdeadbeef},
		{Protocol: 0x0800, Checksum: true},
		{Protocol: 0x86dd, Checksum: true, HasKey: true, Key: 7, HasSeq: true, Seq: 99},
		{Protocol: 0x0800, HasSeq: true, Seq: 1},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			buf := gopacket.NewSerializeBuffer()
			g := &layers.GRE{ChecksumPresent: f.Checksum, KeyPresent: f.HasKey, SeqPresent: f.HasSeq,
				Protocol: layers.EthernetType(f.Protocol), Key: f.Key, Seq: f.Seq}
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, g, gopacket.Payload(payload)); err != nil {
				t.Fatal(err)
			}
			theirs := buf.Bytes()
			h, err := fou.ParseGRE(theirs)
			if err != nil {
				t.Fatal(err)
			}
			if h.HeaderLen() != f.Len() || h.Protocol() != f.Protocol || h.Key() != f.Key || h.Seq() != f.Seq || h.HasChecksum() != f.Checksum {
				t.Errorf("parsed gopacket's % x as len %d proto %#x key %d seq %d", theirs[:h.HeaderLen()], h.HeaderLen(), h.Protocol(), h.Key(), h.Seq())
			}
			if f.Checksum && greChecksum(theirs) != 0 {
				t.Errorf("gopacket's checksum does not verify")
			}

			ours := make([]byte, f.Len()+len(payload))
			copy(ours[f.Len():], payload)
			fou.GRE(ours).Encode(&f)
			if f.Checksum {
				fou.GRE(ours).SetChecksum(greChecksum(ours))
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("ours\n % x\ngopacket\n % x", ours, theirs)
			}
			p := gopacket.NewPacket(ours, layers.LayerTypeGRE, gopacket.Default)
			dg, ok := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
			if !ok {
				t.Fatalf("gopacket cannot decode ours: %v", p)
			}
			checkGRE(t, fou.GRE(ours), dg)
		})
	}
}

func TestParseGUE(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, fou.ErrTruncated},
		{"three bytes", []byte{0, 4, 0}, fou.ErrTruncated},
		{"minimal", []byte{0, 4, 0, 0}, nil},
		{"control", []byte{0x20, 1, 0, 0}, nil},
		{"extensions present", []byte{0x01, 4, 0, 0, 1, 2, 3, 4}, nil},
		{"extensions missing", []byte{0x01, 4, 0, 0, 1, 2, 3}, fou.ErrHeaderLength},
		{"flags", []byte{0, 4, 0x80, 0}, fou.ErrUnknownFlags},
		{"variant 1 IPv4", []byte{0x45}, nil},
		{"variant 1 IPv6", []byte{0x60}, nil},
		{"variant 1 bad nibble", []byte{0x50}, fou.ErrBadVersion},
		{"variant 2", []byte{0x80, 4, 0, 0}, fou.ErrBadVersion},
		{"variant 3", []byte{0xc0, 4, 0, 0}, fou.ErrBadVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := fou.ParseGUE(tc.b)
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseGUE(% x) = %v, want %v", tc.b, err, tc.err)
			}
			if err == nil && len(h.Payload()) != len(tc.b)-h.HeaderLen() {
				t.Errorf("payload %d bytes", len(h.Payload()))
			}
			if err != nil && h != nil {
				t.Errorf("ParseGUE returned a header with an error")
			}
		})
	}
}

func TestParseGRE(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		err  error
	}{
		{"empty", nil, fou.ErrTruncated},
		{"minimal", []byte{0, 0, 8, 0}, nil},
		{"key announced, missing", []byte{0x20, 0, 8, 0, 0, 0}, fou.ErrTruncated},
		{"all optional fields", append([]byte{0xb0, 0, 8, 0}, make([]byte, 12)...), nil},
		{"version 1", []byte{0x20, 1, 8, 0x0b, 0, 0, 0, 0}, fou.ErrBadVersion},
		{"routing", []byte{0x40, 0, 8, 0}, fou.ErrUnknownFlags},
		{"strict source route", []byte{0x08, 0, 8, 0}, fou.ErrUnknownFlags},
		{"recursion", []byte{0x04, 0, 8, 0}, fou.ErrUnknownFlags},
		{"bits 6-12 ignored", []byte{0x03, 0xf8, 8, 0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := fou.ParseGRE(tc.b); !errors.Is(err, tc.err) {
				t.Fatalf("ParseGRE(% x) = %v, want %v", tc.b, err, tc.err)
			}
		})
	}
}

// TestParseNoAllocs: the parsers and encoders never allocate.
func TestParseNoAllocs(t *testing.T) {
	gueb := []byte{0x01, 4, 0, 0, 1, 2, 3, 4}
	greb := append([]byte{0xb0, 0, 8, 0}, make([]byte, 12)...)
	f := fou.GREFields{Protocol: 0x0800, Checksum: true, HasKey: true, Key: 1, HasSeq: true}
	if n := testing.AllocsPerRun(100, func() {
		fou.ParseGUE(gueb)
		fou.ParseGRE(greb)
		fou.GUE(gueb).Encode(&fou.GUEFields{Proto: 41})
		fou.GRE(greb).Encode(&f)
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

// TestGUEEncodeExtLen: Hlen counts extension words and never spills into
// the C bit or the version, whatever ExtLen says.
func TestGUEEncodeExtLen(t *testing.T) {
	for _, tc := range []struct{ ext, want int }{{0, 4}, {4, 8}, {7, 8}, {124, 128}, {200, 128}, {-4, 4}} {
		b := make([]byte, 4)
		fou.GUE(b).Encode(&fou.GUEFields{ExtLen: tc.ext, Proto: 4})
		h := fou.GUE(b)
		if h.HeaderLen() != tc.want || h.Variant() != 0 || h.Control() {
			t.Errorf("ExtLen %d: header % x: hlen %d variant %d control %v, want hlen %d", tc.ext, b, h.HeaderLen(), h.Variant(), h.Control(), tc.want)
		}
	}
	if got := fou.Proto(17).String(); got != "ipproto-17" {
		t.Errorf("Proto(17) = %q", got)
	}
}
