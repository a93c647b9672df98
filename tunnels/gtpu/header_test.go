package gtpu_test

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

var update = flag.Bool("update", false, "rewrite testdata/gtpu.pcap from the encoder")

// innerICMP is an IPv4 ICMP echo request 10.202.0.1 -> 10.202.0.2 (36
// octets), the T-PDU of the scapy frame in testdata/encaps.pcap.
var innerICMP = []byte{
	0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x65, 0x42, 0x0a, 0xca, 0x00, 0x01,
	0x0a, 0xca, 0x00, 0x02, 0x08, 0x00, 0x16, 0x1c, 0x00, 0x01, 0x00, 0x01, 0x78, 0x78, 0x78, 0x78,
	0x78, 0x78, 0x78, 0x78,
}

// goldenShort is a G-PDU with the 8-octet header (TS 29.281 §5.1), the
// UDP payload of the frame to port 2152 in testdata/encaps.pcap (scapy 2.5).
var goldenShort = append([]byte{
	0x30,       // version 1 (001), PT 1, spare 0, E 0, S 0, PN 0
	0xff,       // message type 255: G-PDU
	0x00, 0x24, // length 36: the T-PDU
	0x00, 0x00, 0x12, 0x34, // TEID 0x1234
}, innerICMP...)

// goldenPSC is a G-PDU as a gNB sends it on N3 (TS 38.415): the long
// header with a PDU Session Container extension header.
var goldenPSC = append([]byte{
	0x34,       // version 1, PT 1, E 1, S 0, PN 0
	0xff,       // G-PDU
	0x00, 0x2c, // length 44: 4 optional octets + 4 extension octets + 36
	0x00, 0x00, 0x00, 0x2a, // TEID 42
	0x00, 0x00, // sequence number (S clear: not meaningful)
	0x00, // N-PDU number (PN clear: not meaningful)
	0x85, // next extension header: PDU Session Container
	0x01, // extension length 1 (4 octets)
	0x10, // PDU type 1 (UL PDU SESSION INFORMATION), spare
	0x09, // spare, QFI 9
	0x00, // next extension header: none
}, innerICMP...)

// goldenEcho is an Echo Request (§7.2.1): S flag, TEID 0, sequence 0x0102,
// and a Private Extension-free body (no IE is mandatory).
var goldenEcho = []byte{
	0x32,       // version 1, PT 1, S 1
	0x01,       // Echo Request
	0x00, 0x04, // length 4: the optional octets
	0x00, 0x00, 0x00, 0x00, // TEID 0
	0x01, 0x02, // sequence number 0x0102
	0x00, // N-PDU number
	0x00, // no extension header
}

// goldenTwoExt is a G-PDU with S and PN set and two extension headers: a
// UDP Port (0x40, comprehension not required) and a PDCP PDU Number
// (0xc0), each 4 octets.
var goldenTwoExt = append([]byte{
	0x37,       // version 1, PT 1, E 1, S 1, PN 1
	0xff,       // G-PDU
	0x00, 0x30, // length 48 = 4 + 4 + 4 + 36
	0xde, 0xad, 0xbe, 0xef, // TEID
	0xab, 0xcd, // sequence number
	0x07,                   // N-PDU number
	0x40,                   // next: UDP Port
	0x01, 0x08, 0x68, 0xc0, // len 1, port 2152, next: PDCP PDU number
	0x01, 0x00, 0x05, 0x00, // len 1, PDCP number 5, next: none
}, innerICMP...)

func TestParseGolden(t *testing.T) {
	for _, tc := range []struct {
		name     string
		b        []byte
		typ      gtpu.MessageType
		teid     gtpu.TEID
		hdrLen   int
		seq      uint16
		hasSeq   bool
		exts     []uint8
		payload  []byte
		gopacket bool // gopacket decodes it (it has no Echo Request body)
	}{
		{"short", goldenShort, gtpu.GPDU, 0x1234, 8, 0, false, nil, innerICMP, true},
		{"pdu session container", goldenPSC, gtpu.GPDU, 42, 16, 0, false, []uint8{gtpu.ExtPDUSessionContainer}, innerICMP, true},
		{"echo request", goldenEcho, gtpu.EchoRequest, 0, 12, 0x0102, true, nil, []byte{}, true},
		{"two extensions", goldenTwoExt, gtpu.GPDU, 0xdeadbeef, 20, 0xabcd, true, []uint8{gtpu.ExtUDPPort, gtpu.ExtPDCPPDUNumber}, innerICMP, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := gtpu.Parse(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if h.Version() != 1 || !h.IsGTP() || h.Type() != tc.typ || h.TEID() != tc.teid || h.HeaderLen() != tc.hdrLen || h.HasSeq() != tc.hasSeq {
				t.Errorf("got version %d gtp %v type %d teid %v hlen %d hasSeq %v", h.Version(), h.IsGTP(), h.Type(), h.TEID(), h.HeaderLen(), h.HasSeq())
			}
			if tc.hasSeq && h.Seq() != tc.seq {
				t.Errorf("seq %#x, want %#x", h.Seq(), tc.seq)
			}
			var exts []uint8
			for it := h.Extensions(); ; {
				typ, e, ok := it.Next()
				if !ok {
					break
				}
				if e.Len() != 4 || len(e.Content()) != 2 {
					t.Errorf("extension %#x: len %d content %x", typ, e.Len(), e.Content())
				}
				exts = append(exts, typ)
			}
			if !cmp.Equal(exts, tc.exts) {
				t.Errorf("extensions %x, want %x", exts, tc.exts)
			}
			if !bytes.Equal(h.Payload(), tc.payload) {
				t.Errorf("payload % x, want % x", h.Payload(), tc.payload)
			}
			if !tc.gopacket {
				return
			}
			var g layers.GTPv1U
			if err := g.DecodeFromBytes(tc.b, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("gopacket: %v", err)
			}
			checkAgreesWithGopacket(t, h, &g)
		})
	}
}

// checkAgreesWithGopacket compares our view of h with gopacket's decode.
func checkAgreesWithGopacket(t *testing.T, h gtpu.Header, g *layers.GTPv1U) {
	t.Helper()
	if g.Version != h.Version() || g.ProtocolType != 1 || g.MessageType != uint8(h.Type()) || g.MessageLength != h.Length() ||
		g.TEID != uint32(h.TEID()) || g.SequenceNumberFlag != h.HasSeq() || g.NPDUFlag != h.HasNPDU() || g.ExtensionHeaderFlag != h.HasExt() {
		t.Errorf("gopacket %+v disagrees with our header % x", g, []byte(h[:h.HeaderLen()]))
	}
	if h.HasSeq() && g.SequenceNumber != h.Seq() {
		t.Errorf("gopacket seq %#x, ours %#x", g.SequenceNumber, h.Seq())
	}
	var ours []layers.GTPExtensionHeader
	for it := h.Extensions(); ; {
		typ, e, ok := it.Next()
		if !ok {
			break
		}
		ours = append(ours, layers.GTPExtensionHeader{Type: typ, Content: e.Content()})
	}
	if !cmp.Equal(ours, g.GTPExtensionHeaders) {
		t.Errorf("extensions: ours %+v, gopacket %+v", ours, g.GTPExtensionHeaders)
	}
	if len(g.Payload) > 0 && !bytes.Equal(g.Payload, h.Payload()) {
		t.Errorf("payload: gopacket % x, ours % x", g.Payload, h.Payload())
	}
}

func TestParseErrors(t *testing.T) {
	mod := func(b []byte, f func(b []byte)) []byte { b = bytes.Clone(b); f(b); return b }
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, gtpu.ErrTruncated},
		{"7 octets", goldenShort[:7], gtpu.ErrTruncated},
		{"version 0", mod(goldenShort, func(b []byte) { b[0] = 0x10 }), gtpu.ErrVersion},
		{"version 2", mod(goldenShort, func(b []byte) { b[0] = 0x50 }), gtpu.ErrVersion},
		{"GTP prime", mod(goldenShort, func(b []byte) { b[0] = 0x20 }), gtpu.ErrProtocolType},
		{"length beyond datagram", goldenShort[:len(goldenShort)-1], gtpu.ErrTruncated},
		{"length 0xffff", mod(goldenShort, func(b []byte) { b[2], b[3] = 0xff, 0xff }), gtpu.ErrTruncated},
		{"S flag with length 3", mod(goldenEcho, func(b []byte) { b[3] = 3 }), gtpu.ErrBadLength},
		{"S flag, 11 octets", mod(goldenEcho[:11], func(b []byte) { b[3] = 3 }), gtpu.ErrBadLength},
		{"E flag, chain past length", mod(goldenPSC, func(b []byte) { b[3] = 5 })[:13], gtpu.ErrBadLength},
		{"E flag, extension longer than length", mod(goldenPSC, func(b []byte) { b[12] = 200 }), gtpu.ErrBadLength},
		{"extension length 0", mod(goldenPSC, func(b []byte) { b[12] = 0 }), gtpu.ErrBadExtension},
		{"E flag, no room for the announced extension", mod(goldenPSC[:12], func(b []byte) { b[3] = 4 }), gtpu.ErrBadLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := gtpu.Parse(tc.b)
			if !errors.Is(err, tc.want) || h != nil {
				t.Errorf("Parse = %v, %v; want nil, %v", h, err, tc.want)
			}
		})
	}
}

func TestParseTrailingBytes(t *testing.T) {
	b := append(bytes.Clone(goldenShort), 0xee, 0xee)
	h, err := gtpu.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != len(goldenShort) || !bytes.Equal(h.Payload(), innerICMP) {
		t.Errorf("trailing octets kept: % x", []byte(h))
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    gtpu.Fields
		want []byte
	}{
		{"short G-PDU", gtpu.Fields{Type: gtpu.GPDU, Length: 36, TEID: 0x1234}, goldenShort[:8]},
		{"echo request", gtpu.Fields{Type: gtpu.EchoRequest, Length: 4, HasSeq: true, Seq: 0x0102}, goldenEcho},
		{"PSC", gtpu.Fields{Type: gtpu.GPDU, Length: 44, TEID: 42, NextExt: gtpu.ExtPDUSessionContainer}, goldenPSC[:12]},
		{"S and PN", gtpu.Fields{Type: gtpu.GPDU, Length: 48, TEID: 0xdeadbeef, HasSeq: true, Seq: 0xabcd, HasNPDU: true, NPDU: 7, NextExt: gtpu.ExtUDPPort}, goldenTwoExt[:12]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, 16)
			n := gtpu.Header(b).Encode(&tc.f)
			if diff := cmp.Diff(tc.want, b[:n]); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestEchoResponseEncoding(t *testing.T) {
	b := make([]byte, gtpu.EchoResponseLen)
	gtpu.EncodeEchoResponse(b, 0x0102)
	want := []byte{
		0x32,       // version 1, PT 1, S 1
		0x02,       // Echo Response
		0x00, 0x06, // length: 4 optional octets + Recovery IE
		0, 0, 0, 0, // TEID 0 (§7.2.2)
		0x01, 0x02, // the request's sequence number
		0x00, 0x00, // N-PDU, no extension
		0x0e, 0x00, // Recovery IE (type 14), restart counter 0 (§8.2)
	}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	var g layers.GTPv1U
	if err := g.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	if g.MessageType != 2 || g.SequenceNumber != 0x0102 || !g.SequenceNumberFlag {
		t.Errorf("gopacket: %+v", g)
	}
}

// TestGopacketEncodeOursDecode has gopacket serialize headers and checks
// that Parse reads the same fields, including an extension header chain.
func TestGopacketEncodeOursDecode(t *testing.T) {
	for _, g := range []*layers.GTPv1U{
		{Version: 1, ProtocolType: 1, MessageType: 255, TEID: 7},
		{Version: 1, ProtocolType: 1, MessageType: 255, TEID: 0x01020304, ExtensionHeaderFlag: true,
			GTPExtensionHeaders: []layers.GTPExtensionHeader{{Type: 0x85, Content: []byte{0x00, 0x05}}}},
		{Version: 1, ProtocolType: 1, MessageType: 1, SequenceNumberFlag: true, SequenceNumber: 9},
	} {
		// gopacket v1.1.19's SerializeTo prepends the mandatory header but
		// appends the optional octets and extensions, after any payload,
		// and never fixes the length: serialize the header alone, with
		// the length set, and add the T-PDU after it.
		g.MessageLength = uint16(len(innerICMP))
		if g.SequenceNumberFlag || g.ExtensionHeaderFlag || g.NPDUFlag {
			g.MessageLength += 4
		}
		for _, e := range g.GTPExtensionHeaders {
			g.MessageLength += uint16(2 + len(e.Content))
		}
		buf := gopacket.NewSerializeBuffer()
		if err := g.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
			t.Fatal(err)
		}
		wire := append(bytes.Clone(buf.Bytes()), innerICMP...)
		h, err := gtpu.Parse(wire)
		if err != nil {
			t.Fatalf("% x: %v", wire, err)
		}
		var back layers.GTPv1U
		if err := back.DecodeFromBytes(wire, gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		checkAgreesWithGopacket(t, h, &back)
		if !bytes.Equal(h.Payload(), innerICMP) {
			t.Errorf("payload % x", h.Payload())
		}
	}
}

// TestOursEncodeGopacketDecode encodes a header with a PDU Session
// Container and checks gopacket's decode.
func TestOursEncodeGopacketDecode(t *testing.T) {
	b := make([]byte, 16, 16+len(innerICMP))
	gtpu.Header(b).Encode(&gtpu.Fields{Type: gtpu.GPDU, Length: uint16(8 + len(innerICMP)), TEID: 0xcafe, NextExt: gtpu.ExtPDUSessionContainer})
	copy(b[12:], []byte{1, 0x00, 0x09, 0})
	b = append(b, innerICMP...)
	var g layers.GTPv1U
	if err := g.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	want := layers.GTPv1U{Version: 1, ProtocolType: 1, ExtensionHeaderFlag: true, MessageType: 255, MessageLength: uint16(8 + len(innerICMP)), TEID: 0xcafe,
		GTPExtensionHeaders: []layers.GTPExtensionHeader{{Type: 0x85, Content: []byte{0x00, 0x09}}}}
	g.BaseLayer = layers.BaseLayer{}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("gopacket decode (-want +got):\n%s", diff)
	}
}

// TestGoldenEncapsPcap checks the GTP-U frame scapy wrote into
// testdata/encaps.pcap against goldenShort and gopacket's decode.
func TestGoldenEncapsPcap(t *testing.T) {
	frames := gtpFrames(t, "encaps.pcap")
	if len(frames) != 1 {
		t.Fatalf("got %d frames to port %d, want 1", len(frames), gtpu.DefaultPort)
	}
	if !bytes.Equal(frames[0].UDP.Payload, goldenShort) {
		t.Fatalf("UDP payload differs from goldenShort:\n got % x\nwant % x", frames[0].UDP.Payload, goldenShort)
	}
	g, ok := frames[0].Packet.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
	if !ok {
		t.Fatal("gopacket found no GTPv1U layer")
	}
	h, err := gtpu.Parse(frames[0].UDP.Payload)
	if err != nil {
		t.Fatal(err)
	}
	checkAgreesWithGopacket(t, h, g)
}

// TestGoldenPcap checks testdata/gtpu.pcap, frames built from our
// encoder's output (rewrite with -update; check with `tshark -V`), against
// what the encoder gives now and against gopacket's decode of each frame.
func TestGoldenPcap(t *testing.T) {
	var frames [][]byte
	psc := make([]byte, 16)
	gtpu.Header(psc).Encode(&gtpu.Fields{Type: gtpu.GPDU, Length: uint16(8 + len(innerICMP)), TEID: 42, NextExt: gtpu.ExtPDUSessionContainer})
	copy(psc[12:], []byte{1, 0x00, 0x09, 0})
	short := make([]byte, 8)
	gtpu.Header(short).Encode(&gtpu.Fields{Type: gtpu.GPDU, Length: uint16(len(innerICMP)), TEID: 0x1234})
	echo := make([]byte, gtpu.EchoResponseLen)
	gtpu.EncodeEchoResponse(echo, 0x0102)
	ei := make([]byte, gtpu.ErrorIndicationMaxLen)
	ei = ei[:gtpu.EncodeErrorIndication(ei, 0x1234, netip.MustParseAddr("10.201.0.1"), 40000)]
	for _, p := range [][]byte{append(short, innerICMP...), append(psc, innerICMP...), echo, ei} {
		frames = append(frames, udpFrame(t, p))
	}
	path := filepath.Join("testdata", "gtpu.pcap")
	if *update {
		if err := os.WriteFile(path, tunneltest.WritePcap(tunneltest.LinkTypeEthernet, frames...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := gtpFrames(t, "gtpu.pcap")
	if len(got) != len(frames) {
		t.Fatalf("%s has %d GTP-U frames, want %d (run with -update)", path, len(got), len(frames))
	}
	for i, c := range got {
		if !bytes.Equal(c.Packet.Data(), frames[i]) {
			t.Errorf("frame %d differs from the encoder's output (run with -update)", i+1)
		}
		g, ok := c.Packet.Layer(layers.LayerTypeGTPv1U).(*layers.GTPv1U)
		if !ok {
			t.Fatalf("frame %d: gopacket found no GTPv1U layer", i+1)
		}
		h, err := gtpu.Parse(c.UDP.Payload)
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		checkAgreesWithGopacket(t, h, g)
	}
}

// udpFrame wraps payload in Ethernet, IPv4 10.201.0.1 -> 10.201.0.2 and UDP
// 2152 -> 2152.
func udpFrame(t *testing.T, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{10, 201, 0, 1}, DstIP: []byte{10, 201, 0, 2}}
	udp := &layers.UDP{SrcPort: gtpu.DefaultPort, DstPort: gtpu.DefaultPort}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gtpFrames returns the datagrams to port 2152 in a LINKTYPE_ETHERNET pcap
// under testdata/.
func gtpFrames(t testing.TB, name string) []tunneltest.CapturedUDP {
	return tunneltest.ReadUDP(t, name, gtpu.DefaultPort)
}

// TestHeaderNoAllocs guards Parse, the extension walk and Encode.
func TestHeaderNoAllocs(t *testing.T) {
	b := make([]byte, 16)
	n := testing.AllocsPerRun(100, func() {
		h, err := gtpu.Parse(goldenTwoExt)
		if err != nil {
			t.Fatal(err)
		}
		for it := h.Extensions(); ; {
			if _, _, ok := it.Next(); !ok {
				break
			}
		}
		_ = h.Payload()
		gtpu.Header(b).Encode(&gtpu.Fields{Type: gtpu.GPDU, TEID: 1, HasSeq: true})
	})
	if n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}
