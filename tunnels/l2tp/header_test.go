package l2tp_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

var update = flag.Bool("update", false, "rewrite testdata/l2tp.pcap")

// goldenData is an L2TPv3 data message over UDP (the UDP payload), hand
// assembled from RFC 3931 §4.1.2.1, §4.1 and §4.6 and RFC 4719 (Ethernet
// pseudowire): session 42, 4-byte cookie, Default L2-Specific Sublayer with
// S=1 and sequence number 7, carrying an Ethernet frame with an ICMP echo
// request. It is the UDP payload of testdata/l2tp.pcap (see
// TestEncodeGopacketDecode for the tshark command that shows its fields;
// tshark is not run by the tests, that check belongs to the e2e work).
var goldenData = []byte{
	// L2TPv3 header, RFC 3931 §4.1.2.1
	0x00, 0x03, // T=0 (data), 11 reserved x bits 0, Ver=3
	0x00, 0x00, // Reserved
	0x00, 0x00, 0x00, 0x2a, // Session ID 42
	0xc0, 0x0c, 0x1e, 0x42, // Cookie (4 bytes), RFC 3931 §4.1
	// Default L2-Specific Sublayer, RFC 3931 §4.6
	0x40, 0x00, 0x00, 0x07, // x=0, S=1, 6 x bits 0, Sequence Number 7
	// Ethernet, RFC 4719 §4: the frame without preamble or FCS
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // destination MAC
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source MAC
	0x08, 0x00, // EtherType IPv4
	// IPv4
	0x45, 0x00, 0x00, 0x1c, // version 4, IHL 5, TOS 0, total length 28
	0x00, 0x01, 0x00, 0x00, // ID 1, no flags, offset 0
	0x40, 0x01, 0xf7, 0x7b, // TTL 64, protocol ICMP, header checksum
	0xc0, 0xa8, 0x2a, 0x01, // source 192.168.42.1
	0xc0, 0xa8, 0x2a, 0x02, // destination 192.168.42.2
	// ICMP echo request
	0x08, 0x00, 0xf7, 0xfe, // type 8, code 0, checksum
	0x00, 0x01, 0x00, 0x00, // identifier 1, sequence 0
}

const goldenHdrLen = 16 // header + cookie + sublayer

var goldenCookie = []byte{0xc0, 0x0c, 0x1e, 0x42}

func TestGoldenParse(t *testing.T) {
	h, err := l2tp.Parse(goldenData)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ValidateSession(4, l2tp.L2SpecDefault); err != nil {
		t.Fatal(err)
	}
	type fields struct {
		Control  bool
		Version  uint8
		Reserved uint16
		Session  l2tp.SessionID
		Cookie   []byte
		SeqValid bool
		Seq      uint32
	}
	sl := h.Sublayer(4)
	got := fields{h.IsControl(), h.Version(), h.Reserved(), h.SessionID(), h.Cookie(4), sl.SeqValid(), sl.Seq()}
	want := fields{false, 3, 0, 42, goldenCookie, true, 7}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("golden fields (-want +got):\n%s", diff)
	}
	checkInnerFrame(t, h.Payload(4, l2tp.L2SpecDefault))
}

// checkInnerFrame decodes an inner frame with gopacket: gopacket has no
// L2TPv3 layer, but the Ethernet pseudowire's payload must decode as the
// golden ICMP echo request.
func checkInnerFrame(t *testing.T, frame []byte) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if eth == nil || ip == nil || icmp == nil {
		t.Fatalf("gopacket decoded %v, want Ethernet/IPv4/ICMPv4", p.Layers())
	}
	if eth.SrcMAC.String() != "02:00:00:00:00:01" || eth.DstMAC.String() != "02:00:00:00:00:02" {
		t.Errorf("inner Ethernet %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	if ip.SrcIP.String() != "192.168.42.1" || ip.DstIP.String() != "192.168.42.2" {
		t.Errorf("inner IPv4 %v -> %v", ip.SrcIP, ip.DstIP)
	}
	if icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest || icmp.Id != 1 {
		t.Errorf("inner ICMP %v id %d, want echo request id 1", icmp.TypeCode, icmp.Id)
	}
}

func TestGoldenEncode(t *testing.T) {
	b := make([]byte, goldenHdrLen)
	n := l2tp.Header(b).Encode(&l2tp.Fields{SessionID: 42, Cookie: goldenCookie, L2Spec: l2tp.L2SpecDefault, SeqValid: true, Seq: 7})
	if n != goldenHdrLen || !bytes.Equal(b, goldenData[:goldenHdrLen]) {
		t.Errorf("Encode wrote %d bytes % x, want % x", n, b, goldenData[:goldenHdrLen])
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    l2tp.Fields
		want []byte
	}{
		{"bare", l2tp.Fields{SessionID: 0xdeadbeef}, []byte{0, 3, 0, 0, 0xde, 0xad, 0xbe, 0xef}},
		{"8-byte cookie", l2tp.Fields{SessionID: 1, Cookie: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
			[]byte{0, 3, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"sublayer without seq", l2tp.Fields{SessionID: 1, L2Spec: l2tp.L2SpecDefault, Seq: 99},
			[]byte{0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}},
		{"seq wraps at 24 bits", l2tp.Fields{SessionID: 1, L2Spec: l2tp.L2SpecDefault, SeqValid: true, Seq: 1<<24 + 5},
			[]byte{0, 3, 0, 0, 0, 0, 0, 1, 0x40, 0, 0, 5}},
		{"largest seq", l2tp.Fields{SessionID: 1, L2Spec: l2tp.L2SpecDefault, SeqValid: true, Seq: l2tp.MaxSeq},
			[]byte{0, 3, 0, 0, 0, 0, 0, 1, 0x40, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Repeat([]byte{0xaa}, 20)
			n := l2tp.Header(b).Encode(&tc.f)
			if diff := cmp.Diff(tc.want, b[:n]); diff != "" {
				t.Errorf("Encode (-want +got):\n%s", diff)
			}
			if b[n] != 0xaa {
				t.Errorf("Encode wrote past its length %d", n)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, l2tp.ErrTruncated},
		{"one byte", []byte{0}, l2tp.ErrTruncated},
		{"control message", []byte{0xc8, 0x03, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0}, l2tp.ErrControl},
		{"bare T bit, 2 bytes", []byte{0x80, 0x00}, l2tp.ErrControl},
		{"L2TPv2 control message", []byte{0xc8, 0x02, 0, 12}, l2tp.ErrControl},
		{"L2TPv2 data", []byte{0x00, 0x02, 0, 1, 0, 1, 0, 0}, l2tp.ErrVersion},
		{"version 0", []byte{0, 0, 0, 0, 0, 0, 0, 1}, l2tp.ErrVersion},
		{"version 15", []byte{0, 0x0f, 0, 0, 0, 0, 0, 1}, l2tp.ErrVersion},
		{"7 bytes", []byte{0, 3, 0, 0, 0, 0, 0}, l2tp.ErrTruncated},
		{"x bits and reserved are ignored", []byte{0x7f, 0xf3, 0xff, 0xff, 0, 0, 0, 1}, nil},
		{"session 0 parses (the caller routes it)", []byte{0, 3, 0, 0, 0, 0, 0, 0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := l2tp.Parse(tc.b)
			if err != tc.want {
				t.Fatalf("Parse(% x) = %v, want %v", tc.b, err, tc.want)
			}
			if err != nil && h != nil {
				t.Errorf("Parse returned a header with error %v", err)
			}
		})
	}
	h, _ := l2tp.Parse(goldenData[:goldenHdrLen])
	if err := h.ValidateSession(4, l2tp.L2SpecDefault); err != nil {
		t.Errorf("ValidateSession(4, default) on 16 bytes: %v", err)
	}
	if err := h.ValidateSession(8, l2tp.L2SpecDefault); err != l2tp.ErrTruncated {
		t.Errorf("ValidateSession(8, default) on 16 bytes = %v, want ErrTruncated", err)
	}
	if _, err := l2tp.ParseSublayer([]byte{0x40, 0, 0}); err != l2tp.ErrTruncated {
		t.Errorf("ParseSublayer(3 bytes) = %v, want ErrTruncated", err)
	}
	if sl, err := l2tp.ParseSublayer([]byte{0xbf, 0x12, 0x34, 0x56}); err != nil || sl.SeqValid() || sl.Seq() != 0x123456 {
		t.Errorf("ParseSublayer(x bits set, S clear) = valid %v seq %#x err %v", sl.SeqValid(), sl.Seq(), err)
	}
}

func TestSetters(t *testing.T) {
	b := make([]byte, 8)
	h := l2tp.Header(b)
	h.SetFlags(l2tp.FlagT | 3)
	h.SetSessionID(0x01020304)
	if !h.IsControl() || h.Version() != 3 || h.SessionID() != 0x01020304 || h.Flags() != 0x8003 {
		t.Errorf("after setters: % x", b)
	}
}

// TestEncodeGopacketDecode wraps our encoder's output in Ethernet, IPv4 and
// UDP with gopacket, decodes the whole frame back with gopacket, finds our
// header in the UDP payload and the inner frame after it, and checks the
// frame against testdata/l2tp.pcap (rewritten with -update). Wireshark 4.0
// decodes that capture's fields as sent (session 42, cookie c00c1e42, S
// bit, sequence number 7) with `tshark -r testdata/l2tp.pcap -d
// udp.port==1701,l2tp -o 'l2tp.cookie_size:4 Byte Cookie' -o
// 'l2tp.l2_specific:Default L2-Specific' -V`; it shows the frame as data,
// since the pseudowire type comes from the control plane.
func TestEncodeGopacketDecode(t *testing.T) {
	payload := make([]byte, len(goldenData))
	n := l2tp.Header(payload).Encode(&l2tp.Fields{SessionID: 42, Cookie: goldenCookie, L2Spec: l2tp.L2SpecDefault, SeqValid: true, Seq: 7})
	copy(payload[n:], goldenData[n:])

	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0x99, 1}, DstMAC: []byte{2, 0, 0, 0, 0x99, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{10, 99, 0, 1}, DstIP: []byte{10, 99, 0, 2}}
	udp := &layers.UDP{SrcPort: l2tp.DefaultPort, DstPort: l2tp.DefaultPort}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	frame := buf.Bytes()

	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if u == nil {
		t.Fatalf("gopacket found no UDP in %v", p.Layers())
	}
	if u.DstPort != l2tp.DefaultPort {
		t.Errorf("UDP port %d", u.DstPort)
	}
	h, err := l2tp.Parse(u.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ValidateSession(4, l2tp.L2SpecDefault); err != nil {
		t.Fatal(err)
	}
	if h.SessionID() != 42 || !bytes.Equal(h.Cookie(4), goldenCookie) || h.Sublayer(4).Seq() != 7 {
		t.Errorf("decoded header % x", u.Payload[:goldenHdrLen])
	}
	checkInnerFrame(t, h.Payload(4, l2tp.L2SpecDefault))

	file := filepath.Join("testdata", "l2tp.pcap")
	pcap := tunneltest.WritePcap(tunneltest.LinkTypeEthernet, frame)
	if *update {
		if err := os.WriteFile(file, pcap, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(committed, pcap) {
		t.Errorf("%s differs from the encoder's frame (run with -update if the change is intended)", file)
	}
}

func TestHeaderNoAllocs(t *testing.T) {
	b := make([]byte, 64)
	f := l2tp.Fields{SessionID: 42, Cookie: goldenCookie, L2Spec: l2tp.L2SpecDefault, SeqValid: true, Seq: 7}
	if n := testing.AllocsPerRun(100, func() {
		l2tp.Header(b).Encode(&f)
		h, err := l2tp.Parse(b)
		if err != nil || h.ValidateSession(4, l2tp.L2SpecDefault) != nil || h.Sublayer(4).Seq() != 7 {
			t.Fatal("round trip failed")
		}
	}); n != 0 {
		t.Errorf("Encode+Parse allocate %v times, want 0", n)
	}
}
