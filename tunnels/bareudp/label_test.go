package bareudp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/tunnels/bareudp"
)

var update = flag.Bool("update", false, "rewrite testdata/mplsudp.pcap")

// goldenScapy is the MPLS-in-UDP frame of testdata/encaps.pcap (scapy 2.5,
// copied from the project's shared peers): "tshark -r testdata/encaps.pcap
// -Y udp.port==6635 -d udp.port==6635,mpls -V -x":
//
//	Internet Protocol Version 4, Src: 10.201.0.1, Dst: 10.201.0.2
//	User Datagram Protocol, Src Port: 40000, Dst Port: 6635
//	MultiProtocol Label Switching Header, Label: 100, Exp: 0, S: 1, TTL: 64
//	Internet Protocol Version 4, Src: 10.202.0.1, Dst: 10.202.0.2
//	Internet Control Message Protocol (echo request)
var goldenScapy = []byte{
	// Ethernet: dst 02:00:00:00:00:02, src 02:00:00:00:00:01, type IPv4
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
	// IPv4: 20 bytes, total 68, ID 1, TTL 64, UDP, 10.201.0.1 -> 10.201.0.2
	0x45, 0x00, 0x00, 0x44, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x65, 0x14, 0x0a, 0xc9, 0x00, 0x01, 0x0a, 0xc9, 0x00, 0x02,
	// UDP: 40000 -> 6635 (RFC 7510 §3 MPLS-in-UDP), length 48, checksum
	0x9c, 0x40, 0x19, 0xeb, 0x00, 0x30, 0xf2, 0x87,
	// MPLS (RFC 3032 §2.1): label 100 (0x00064), TC 0, S 1, TTL 64
	0x00, 0x06, 0x41, 0x40,
	// inner IPv4: total 36, TTL 64, ICMP, 10.202.0.1 -> 10.202.0.2
	0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x65, 0x42, 0x0a, 0xca, 0x00, 0x01, 0x0a, 0xca, 0x00, 0x02,
	// ICMP echo request, id 1, seq 1, 8 bytes of 'x'
	0x08, 0x00, 0x16, 0x1c, 0x00, 0x01, 0x00, 0x01, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
}

const goldenUDPPayload = 14 + 20 + 8

// goldenTwoLabels is a hand-assembled two-entry stack, RFC 3032 §2.1:
var goldenTwoLabels = []byte{
	// label 1000 (0x003e8), TC 5, S 0, TTL 64: 0x003e8<<12 | 5<<9 | 64
	0x00, 0x3e, 0x8a, 0x40,
	// label 2 (IPv6 explicit null), TC 0, S 1, TTL 255
	0x00, 0x00, 0x21, 0xff,
	// first byte of an IPv6 payload
	0x60,
}

// TestGoldenPackets decodes the golden stacks with ParseLabelStack and with
// gopacket's MPLS layer and compares the fields.
func TestGoldenPackets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       []byte
		want    []bareudp.EntryFields
		payload byte
	}{
		{"scapy label 100", goldenScapy[goldenUDPPayload:], []bareudp.EntryFields{{Label: 100, BottomOfStack: true, TTL: 64}}, 0x45},
		{"two labels", goldenTwoLabels, []bareudp.EntryFields{{Label: 1000, TC: 5, TTL: 64}, {Label: bareudp.LabelIPv6ExplicitNull, BottomOfStack: true, TTL: 255}}, 0x60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := bareudp.ParseLabelStack(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			var got []bareudp.EntryFields
			for i := range ls.Depth() {
				got = append(got, ls.Entry(i).Fields())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ours (-want +got):\n%s", diff)
			}
			if p := tc.b[len(ls)]; p != tc.payload {
				t.Errorf("payload starts with %#x, want %#x", p, tc.payload)
			}
			if diff := cmp.Diff(tc.want, gopacketEntries(t, tc.b)); diff != "" {
				t.Errorf("gopacket (-want +got):\n%s", diff)
			}
		})
	}
}

// gopacketEntries decodes b's label stack with gopacket.
func gopacketEntries(t *testing.T, b []byte) []bareudp.EntryFields {
	t.Helper()
	var out []bareudp.EntryFields
	for _, l := range gopacket.NewPacket(b, layers.LayerTypeMPLS, gopacket.Default).Layers() {
		m, ok := l.(*layers.MPLS)
		if !ok {
			break
		}
		out = append(out, bareudp.EntryFields{Label: bareudp.Label(m.Label), TC: m.TrafficClass, BottomOfStack: m.StackBottom, TTL: m.TTL})
	}
	return out
}

// TestGoldenPcap checks the MPLS-in-UDP frame of the scapy capture against
// goldenScapy, so that the pasted bytes are what the capture holds.
func TestGoldenPcap(t *testing.T) {
	frames := tunneltest.ReadPcap(t, "encaps.pcap", tunneltest.LinkTypeEthernet)
	var found bool
	for _, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == bareudp.MPLSPort {
			found = true
			if !bytes.Equal(f, goldenScapy) {
				t.Errorf("capture frame\n%x\ndiffers from goldenScapy\n%x", f, goldenScapy)
			}
		}
	}
	if !found {
		t.Fatal("no frame to port 6635 in encaps.pcap")
	}
}

// TestOursEncodeGopacketDecode encodes stacks with LabelStack.Encode and
// decodes them with gopacket.
func TestOursEncodeGopacketDecode(t *testing.T) {
	labels := []bareudp.Label{16, 1000, bareudp.LabelIPv4ExplicitNull, bareudp.MaxLabel}
	b := make([]byte, len(labels)*bareudp.EntryLen)
	bareudp.LabelStack(b).Encode(labels, 3, 200)
	var want []bareudp.EntryFields
	for i, l := range labels {
		want = append(want, bareudp.EntryFields{Label: l, TC: 3, TTL: 200, BottomOfStack: i == len(labels)-1})
	}
	if diff := cmp.Diff(want, gopacketEntries(t, append(b, 0x45))); diff != "" {
		t.Errorf("gopacket decode of our stack (-want +got):\n%s", diff)
	}
}

// TestGopacketEncodeOursDecode serializes MPLS layers with gopacket and
// parses them with ParseLabelStack.
func TestGopacketEncodeOursDecode(t *testing.T) {
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{},
		&layers.MPLS{Label: 4242, TrafficClass: 7, TTL: 1},
		&layers.MPLS{Label: 17, TrafficClass: 1, StackBottom: true, TTL: 9},
		gopacket.Payload([]byte{0x45}))
	if err != nil {
		t.Fatal(err)
	}
	ls, err := bareudp.ParseLabelStack(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []bareudp.EntryFields{{Label: 4242, TC: 7, TTL: 1}, {Label: 17, TC: 1, BottomOfStack: true, TTL: 9}}
	got := []bareudp.EntryFields{ls.Entry(0).Fields(), ls.Entry(1).Fields()}
	if diff := cmp.Diff(want, got); diff != "" || ls.Depth() != 2 {
		t.Errorf("depth %d (-want +got):\n%s", ls.Depth(), diff)
	}
}

// TestParseLabelStack covers the error classes and the bound.
func TestParseLabelStack(t *testing.T) {
	s := func(n int, bottom bool) []byte {
		b := make([]byte, n*4)
		if bottom {
			b[n*4-2] = 1
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		b     []byte
		depth int
		err   error
	}{
		{"empty", nil, 0, bareudp.ErrTruncated},
		{"3 bytes", []byte{0, 0, 1}, 0, bareudp.ErrTruncated},
		{"one entry", s(1, true), 1, nil},
		{"no S, ends", s(2, false), 0, bareudp.ErrTruncated},
		{"S in 5th byte of a half entry", append(s(1, false), 0, 0, 1), 0, bareudp.ErrTruncated},
		{"max depth", s(bareudp.MaxLabelDepth, true), bareudp.MaxLabelDepth, nil},
		{"one past max depth", s(bareudp.MaxLabelDepth+1, true), 0, bareudp.ErrTooDeep},
		{"payload after S", append(s(3, true), 0x45, 0), 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := bareudp.ParseLabelStack(tc.b)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if ls.Depth() != tc.depth {
				t.Errorf("depth %d, want %d", ls.Depth(), tc.depth)
			}
		})
	}
}

// TestEntryFields checks every field's bits against RFC 3032's layout.
func TestEntryFields(t *testing.T) {
	e := bareudp.MakeEntry(bareudp.EntryFields{Label: 0xabcde, TC: 6, BottomOfStack: true, TTL: 0x7f})
	if uint32(e) != 0xabcde<<12|6<<9|1<<8|0x7f {
		t.Errorf("entry %#08x", uint32(e))
	}
	// Out-of-range inputs are masked, never spill into the next field.
	e = bareudp.MakeEntry(bareudp.EntryFields{Label: 1 << 20, TC: 8})
	if e != 0 {
		t.Errorf("masked entry %#08x, want 0", uint32(e))
	}
	b := make([]byte, 8)
	ls := bareudp.LabelStack(b)
	ls.SetEntry(1, bareudp.MakeEntry(bareudp.EntryFields{Label: 5, TTL: 1}))
	if got := binary.BigEndian.Uint32(b[4:]); got != 5<<12|1 || ls.Entry(1).Label() != 5 {
		t.Errorf("SetEntry wrote %#08x", got)
	}
}

// TestLabelNoAllocs guards the view: parsing and encoding do not allocate.
func TestLabelNoAllocs(t *testing.T) {
	b := append(make([]byte, 12), goldenTwoLabels...)
	labels := []bareudp.Label{100, 200, 300}
	if n := testing.AllocsPerRun(100, func() {
		bareudp.LabelStack(b).Encode(labels, 0, 64)
		ls, err := bareudp.ParseLabelStack(b)
		if err != nil || ls.Depth() != 3 {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

// TestGoldenOurPcap writes (with -update) or checks testdata/mplsudp.pcap:
// the frame of goldenScapy with our encoder's two-label stack (1000, then
// IPv4 explicit null; TTL 64) in place of scapy's, outer lengths fixed up.
// "tshark -r testdata/mplsudp.pcap -d udp.port==6635,mpls -V" shows both
// labels and the inner ICMP echo.
func TestGoldenOurPcap(t *testing.T) {
	stack := make([]byte, 8)
	bareudp.LabelStack(stack).Encode([]bareudp.Label{1000, bareudp.LabelIPv4ExplicitNull}, 0, 64)
	inner := goldenScapy[goldenUDPPayload+4:]
	buf := gopacket.NewSerializeBuffer()
	ip := &layers.IPv4{Version: 4, IHL: 5, Id: 1, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{10, 201, 0, 1}, DstIP: []byte{10, 201, 0, 2}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: bareudp.MPLSPort}
	udp.SetNetworkLayerForChecksum(ip)
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: goldenScapy[6:12], DstMAC: goldenScapy[0:6], EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload(append(stack, inner...)))
	if err != nil {
		t.Fatal(err)
	}
	frame := buf.Bytes()
	path := filepath.Join("testdata", "mplsudp.pcap")
	if *update {
		if err := os.WriteFile(path, tunneltest.WritePcap(tunneltest.LinkTypeEthernet, frame), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	frames := tunneltest.ReadPcap(t, "mplsudp.pcap", tunneltest.LinkTypeEthernet)
	if len(frames) != 1 || !bytes.Equal(frames[0], frame) {
		t.Fatalf("testdata/mplsudp.pcap does not hold\n%x\n(run with -update after checking it with tshark)", frame)
	}
	want := []bareudp.EntryFields{{Label: 1000, TTL: 64}, {Label: 0, BottomOfStack: true, TTL: 64}}
	if diff := cmp.Diff(want, gopacketEntries(t, frame[goldenUDPPayload:])); diff != "" {
		t.Errorf("gopacket (-want +got):\n%s", diff)
	}
}
