package vxlan

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
)

// goldenARPRequest is frame 1 of testdata/vxlan.pcap: an ARP request from
// 10.203.0.1, encapsulated by the side at 10.201.0.1 (the Linux kernel
// device; the Open vSwitch side answers with UDP checksum 0). The VXLAN
// header is at offset 0x2a. "tshark -r testdata/vxlan.pcap -c 1 -O vxlan -x":
//
//	Internet Protocol Version 4, Src: 10.201.0.1, Dst: 10.201.0.2
//	User Datagram Protocol, Src Port: 57460, Dst Port: 4789
//	Virtual eXtensible Local Area Network
//	    Flags: 0x0800, VXLAN Network ID (VNI)
//	        0... .... .... .... = GBP Extension: Not defined
//	        .... 1... .... .... = VXLAN Network ID (VNI): True
//	        .... .... .0.. .... = Don't Learn: False
//	        .... .... .... 0... = Policy Applied: False
//	        .000 .000 0.00 .000 = Reserved(R): 0x0000
//	    Group Policy ID: 0
//	    VXLAN Network Identifier (VNI): 42
//	    Reserved: 0
//	Ethernet II, Src: 06:e7:37:23:79:af, Dst: Broadcast (ff:ff:ff:ff:ff:ff)
//	Address Resolution Protocol (request)
//
//	0000  c2 e6 4c 92 e5 41 7e a3 8f fd ce 5b 08 00 45 00   ..L..A~....[..E.
//	0010  00 4e 68 36 00 00 40 11 fc d4 0a c9 00 01 0a c9   .Nh6..@.........
//	0020  00 02 e0 74 12 b5 00 3a 29 a3 08 00 00 00 00 00   ...t...:).......
//	0030  2a 00 ff ff ff ff ff ff 06 e7 37 23 79 af 08 06   *.........7#y...
//	0040  00 01 08 00 06 04 00 01 06 e7 37 23 79 af 0a cb   ..........7#y...
//	0050  00 01 00 00 00 00 00 00 0a cb 00 02               ............
//
// (Wireshark shows the first word through the GBP extension's layout; in RFC
// 7348 terms it is the flags byte 0x08 and 24 reserved zero bits.)
var goldenARPRequest = []byte{
	0xc2, 0xe6, 0x4c, 0x92, 0xe5, 0x41, 0x7e, 0xa3, 0x8f, 0xfd, 0xce, 0x5b, 0x08, 0x00, 0x45, 0x00,
	0x00, 0x4e, 0x68, 0x36, 0x00, 0x00, 0x40, 0x11, 0xfc, 0xd4, 0x0a, 0xc9, 0x00, 0x01, 0x0a, 0xc9,
	0x00, 0x02, 0xe0, 0x74, 0x12, 0xb5, 0x00, 0x3a, 0x29, 0xa3, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x2a, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x06, 0xe7, 0x37, 0x23, 0x79, 0xaf, 0x08, 0x06,
	0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x06, 0xe7, 0x37, 0x23, 0x79, 0xaf, 0x0a, 0xcb,
	0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xcb, 0x00, 0x02,
}

// goldenVXLANOffset is where the VXLAN header starts in an untagged
// Ethernet/IPv4 (no options)/UDP frame: 14 + 20 + 8.
const goldenVXLANOffset = 14 + 20 + 8

// goldenVNI is the VNI of every VXLAN frame in testdata.
const goldenVNI VNI = 42

// wantGoldenHeader is the header a plain RFC 7348 sender writes for VNI 42:
// flags 0x08, zero reserved bits, VNI 0x00002a.
var wantGoldenHeader = []byte{0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00}

// vxlanFrames returns the datagrams sent to the VXLAN port.
func vxlanFrames(t testing.TB, name string) []tunneltest.CapturedUDP {
	return tunneltest.ReadUDP(t, name, DefaultPort)
}

// TestGoldenPacket checks the pasted frame against the capture it came from
// and parses it at a fixed offset, without gopacket.
func TestGoldenPacket(t *testing.T) {
	frames := vxlanFrames(t, "vxlan.pcap")
	if len(frames) == 0 {
		t.Fatal("no VXLAN frames in testdata/vxlan.pcap")
	}
	if got := frames[0].Packet.Data(); !bytes.Equal(got, goldenARPRequest) {
		t.Fatalf("frame 1 of vxlan.pcap differs from goldenARPRequest:\n got % x\nwant % x", got, goldenARPRequest)
	}

	h, err := Parse(goldenARPRequest[goldenVXLANOffset:])
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := h.VNI(); got != goldenVNI {
		t.Errorf("VNI() = %v, want %v", got, goldenVNI)
	}
	if got := h.Flags(); got != FlagI {
		t.Errorf("Flags() = %#02x, want %#02x", got, FlagI)
	}
	// The inner frame is a broadcast ARP request from 06:e7:37:23:79:af.
	wantInner := goldenARPRequest[goldenVXLANOffset+HeaderLen:]
	if got := h.Payload(); !bytes.Equal(got, wantInner) {
		t.Errorf("Payload() = % x, want % x", got, wantInner)
	}
	if got, want := h.Payload()[12:14], []byte{0x08, 0x06}; !bytes.Equal(got, want) {
		t.Errorf("inner EtherType = % x, want % x (ARP)", got, want)
	}
}

// TestGoldenVXLANPcap parses every frame that Linux and Open vSwitch
// exchanged, cross-decodes each with gopacket and re-encodes it.
func TestGoldenVXLANPcap(t *testing.T) {
	frames := vxlanFrames(t, "vxlan.pcap")
	// ARP request and reply, three ICMP echo requests and replies.
	if len(frames) != 8 {
		t.Fatalf("got %d VXLAN frames in vxlan.pcap, want 8", len(frames))
	}
	for _, c := range frames {
		t.Run(fmt.Sprintf("frame%d", c.Frame), func(t *testing.T) {
			payload := c.UDP.Payload
			h, err := Parse(payload)
			if err != nil {
				t.Fatalf("Parse(% x): %v", payload[:min(len(payload), HeaderLen)], err)
			}
			if got := h.VNI(); got != goldenVNI {
				t.Errorf("VNI() = %v, want %v", got, goldenVNI)
			}
			if got := h.Flags(); got != FlagI {
				t.Errorf("Flags() = %#02x, want %#02x", got, FlagI)
			}
			if !h.HasIFlag() || h.Reserved24() != 0 || h.Reserved8() != 0 {
				t.Errorf("HasIFlag, Reserved24, Reserved8 = %v, %#x, %#x, want true, 0, 0",
					h.HasIFlag(), h.Reserved24(), h.Reserved8())
			}

			// gopacket decoded the same bytes on its own (UDP 4789 is
			// VXLAN in its port table); both decoders must agree.
			vx, ok := c.Packet.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
			if !ok {
				t.Fatalf("gopacket found no VXLAN layer; layers: %v", c.Packet.Layers())
			}
			checkAgreesWithGopacket(t, h, vx)
			if !bytes.Equal(vx.Contents, h[:HeaderLen]) {
				t.Errorf("gopacket Contents = % x, want % x", vx.Contents, h[:HeaderLen])
			}
			if !bytes.Equal(vx.Payload, h.Payload()) {
				t.Errorf("gopacket Payload differs from Payload():\n got % x\nwant % x", vx.Payload, h.Payload())
			}
			if c.Packet.Layer(layers.LayerTypeARP) == nil && c.Packet.Layer(layers.LayerTypeICMPv4) == nil {
				t.Errorf("gopacket found neither ARP nor ICMPv4 inside; layers: %v", c.Packet.Layers())
			}

			// Round trip: our encoder reproduces the captured header.
			got := make([]byte, HeaderLen)
			Header(got).Encode(&Fields{VNI: h.VNI()})
			if !bytes.Equal(got, payload[:HeaderLen]) {
				t.Errorf("Encode(VNI %v) = % x, want captured % x", h.VNI(), got, payload[:HeaderLen])
			}

			// gopacket's encoder, fed what gopacket decoded, gives bytes
			// that we parse to the same header.
			buf := gopacket.NewSerializeBuffer()
			if err := vx.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
				t.Fatalf("gopacket SerializeTo: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), payload[:HeaderLen]) {
				t.Errorf("gopacket re-encoded % x, want captured % x", buf.Bytes(), payload[:HeaderLen])
			}
			h2, err := Parse(buf.Bytes())
			if err != nil {
				t.Fatalf("Parse(gopacket's encoding % x): %v", buf.Bytes(), err)
			}
			if h2.VNI() != h.VNI() {
				t.Errorf("VNI of gopacket's encoding = %v, want %v", h2.VNI(), h.VNI())
			}
		})
	}
	if want := wantGoldenHeader; !bytes.Equal(frames[0].UDP.Payload[:HeaderLen], want) {
		t.Errorf("captured header = % x, want % x", frames[0].UDP.Payload[:HeaderLen], want)
	}
}

// TestGoldenEncapsPcap checks the one VXLAN frame of encaps.pcap. Scapy
// built it with its VXLAN layer over Ethernet, which sets the VXLAN-GPE P
// flag (0x04) and next protocol 3 (Ethernet) in the reserved bits even on
// port 4789: tshark shows "Flags: 0x0c00" and, reading GBP's layout, "Group
// Policy ID: 3". A Linux VXLAN device without the gpe option drops it, and so
// does Parse; an RFC-lenient receiver would read VNI 42.
func TestGoldenEncapsPcap(t *testing.T) {
	frames := vxlanFrames(t, "encaps.pcap")
	if len(frames) != 1 {
		t.Fatalf("got %d frames to port %d in encaps.pcap, want 1", len(frames), DefaultPort)
	}
	c := frames[0]
	payload := c.UDP.Payload
	wantHeader := []byte{0x0c, 0x00, 0x00, 0x03, 0x00, 0x00, 0x2a, 0x00}
	if !bytes.Equal(payload[:HeaderLen], wantHeader) {
		t.Fatalf("captured header = % x, want % x", payload[:HeaderLen], wantHeader)
	}

	if h, err := Parse(payload); err != ErrReservedBits || h != nil {
		t.Errorf("Parse = %v, %v, want nil, %v", h, err, ErrReservedBits)
	}

	// Validate's order lets a lenient caller use the header anyway.
	h := Header(payload)
	if err := h.Validate(); !errors.Is(err, ErrReservedBits) {
		t.Fatalf("Validate() = %v, want %v", err, ErrReservedBits)
	}
	if got := h.VNI(); got != goldenVNI {
		t.Errorf("VNI() = %v, want %v", got, goldenVNI)
	}
	if h.Flags() != FlagI|0x04 || h.Reserved24() != 3 || h.Reserved8() != 0 {
		t.Errorf("Flags, Reserved24, Reserved8 = %#02x, %#x, %#x, want 0x0c, 0x3, 0x0",
			h.Flags(), h.Reserved24(), h.Reserved8())
	}

	// gopacket ignores the bits it does not know (and reads byte 3 as a
	// group policy ID).
	vx, ok := c.Packet.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
	if !ok {
		t.Fatalf("gopacket found no VXLAN layer; layers: %v", c.Packet.Layers())
	}
	checkAgreesWithGopacket(t, h, vx)
	if vx.GBPGroupPolicyID != 3 {
		t.Errorf("gopacket GBPGroupPolicyID = %d, want 3", vx.GBPGroupPolicyID)
	}

	// Re-encoding yields the plain header: the extension bits are dropped,
	// the VNI is kept.
	got := make([]byte, HeaderLen)
	Header(got).Encode(&Fields{VNI: h.VNI()})
	if !bytes.Equal(got, wantGoldenHeader) {
		t.Errorf("Encode(VNI %v) = % x, want % x", h.VNI(), got, wantGoldenHeader)
	}
}

// checkAgreesWithGopacket compares the fields both decoders understand.
func checkAgreesWithGopacket(t *testing.T, h Header, vx *layers.VXLAN) {
	t.Helper()
	if VNI(vx.VNI) != h.VNI() {
		t.Errorf("gopacket VNI = %d, ours %v", vx.VNI, h.VNI())
	}
	if vx.ValidIDFlag != h.HasIFlag() {
		t.Errorf("gopacket ValidIDFlag = %v, ours HasIFlag() = %v", vx.ValidIDFlag, h.HasIFlag())
	}
	if vx.GBPExtension != (h.Flags()&0x80 != 0) {
		t.Errorf("gopacket GBPExtension = %v, flags %#02x", vx.GBPExtension, h.Flags())
	}
}

// TestGopacketEncodeOursDecode and its mirror cross-check the two encoders
// and decoders on VNIs across the range.
func TestGopacketEncodeOursDecode(t *testing.T) {
	for _, vni := range []VNI{0, 1, goldenVNI, 0x123456, 0x800000, MaxVNI} {
		t.Run(vni.String(), func(t *testing.T) {
			buf := gopacket.NewSerializeBuffer()
			vx := &layers.VXLAN{ValidIDFlag: true, VNI: uint32(vni)}
			if err := vx.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
				t.Fatalf("gopacket SerializeTo: %v", err)
			}
			h, err := Parse(buf.Bytes())
			if err != nil {
				t.Fatalf("Parse(% x): %v", buf.Bytes(), err)
			}
			if h.VNI() != vni {
				t.Errorf("VNI() = %v, want %v", h.VNI(), vni)
			}
			ours := make([]byte, HeaderLen)
			Header(ours).Encode(&Fields{VNI: vni})
			if !bytes.Equal(ours, buf.Bytes()) {
				t.Errorf("Encode = % x, gopacket = % x", ours, buf.Bytes())
			}
		})
	}
}

func TestOursEncodeGopacketDecode(t *testing.T) {
	for _, vni := range []VNI{0, 1, goldenVNI, 0x123456, 0x800000, MaxVNI} {
		t.Run(vni.String(), func(t *testing.T) {
			b := make([]byte, HeaderLen)
			Header(b).Encode(&Fields{VNI: vni})
			var vx layers.VXLAN
			if err := vx.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
				t.Fatalf("gopacket DecodeFromBytes(% x): %v", b, err)
			}
			if !vx.ValidIDFlag || VNI(vx.VNI) != vni ||
				vx.GBPExtension || vx.GBPDontLearn || vx.GBPApplied || vx.GBPGroupPolicyID != 0 {
				t.Errorf("gopacket decoded %+v, want ValidIDFlag, VNI %v, no GBP", vx, vni)
			}
			if len(vx.Payload) != 0 {
				t.Errorf("gopacket Payload = % x, want empty", vx.Payload)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	// valid returns a correct header for VNI 42 with mutate applied.
	valid := func(mutate func(b []byte)) []byte {
		b := bytes.Clone(wantGoldenHeader)
		if mutate != nil {
			mutate(b)
		}
		return b
	}
	type test struct {
		name    string
		in      []byte
		wantErr error
		wantVNI VNI // checked when wantErr is nil
	}
	tests := []test{
		{name: "nil", in: nil, wantErr: ErrTruncated},
		{name: "golden", in: valid(nil), wantVNI: goldenVNI},
		{name: "golden with inner frame", in: goldenARPRequest[goldenVXLANOffset:], wantVNI: goldenVNI},
		{name: "VNI 0", in: valid(func(b []byte) { b[6] = 0 }), wantVNI: 0},
		{name: "max VNI", in: []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0}, wantVNI: MaxVNI},
		{name: "VNI high byte", in: []byte{0x08, 0, 0, 0, 0x80, 0, 0, 0}, wantVNI: 0x800000},

		{name: "no I flag", in: valid(func(b []byte) { b[0] = 0 }), wantErr: ErrNoIFlag},
		{name: "all zero", in: make([]byte, HeaderLen), wantErr: ErrNoIFlag},
		// The I flag is checked before the reserved bits, as in vxlan_rcv.
		{name: "no I flag, all other bits set", in: []byte{0xf7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, wantErr: ErrNoIFlag},
		{name: "GBP G flag without I", in: valid(func(b []byte) { b[0] = 0x80 }), wantErr: ErrNoIFlag},

		{name: "all bits set", in: bytes.Repeat([]byte{0xff}, HeaderLen), wantErr: ErrReservedBits},
		{name: "GPE next protocol (scapy)", in: []byte{0x0c, 0, 0, 0x03, 0, 0, 0x2a, 0}, wantErr: ErrReservedBits},
		{name: "GBP policy ID", in: []byte{0x88, 0x40, 0x12, 0x34, 0, 0, 0x2a, 0}, wantErr: ErrReservedBits},
		{name: "reserved8 set", in: valid(func(b []byte) { b[7] = 0x01 }), wantErr: ErrReservedBits},
		{name: "reserved8 high bit", in: valid(func(b []byte) { b[7] = 0x80 }), wantErr: ErrReservedBits},
	}
	// Every length short of a header.
	for n := range HeaderLen {
		tests = append(tests, test{name: fmt.Sprintf("truncated %d bytes", n), in: wantGoldenHeader[:n:n], wantErr: ErrTruncated})
	}
	// Each reserved bit of the flags byte on its own.
	for bit := range 8 {
		if mask := uint8(1) << bit; mask != FlagI {
			tests = append(tests, test{name: fmt.Sprintf("flag %#02x", mask), in: valid(func(b []byte) { b[0] |= mask }), wantErr: ErrReservedBits})
		}
	}
	// Each byte of the 24 reserved bits, low and high bit.
	for i := hdrReserved24; i < hdrReserved24+3; i++ {
		for _, v := range []byte{0x01, 0x80} {
			tests = append(tests, test{name: fmt.Sprintf("reserved24 byte %d = %#02x", i, v), in: valid(func(b []byte) { b[i] = v }), wantErr: ErrReservedBits})
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			err := Header(in).Validate()
			if err != tt.wantErr {
				t.Fatalf("Validate(% x) = %v, want %v", tt.in, err, tt.wantErr)
			}
			h, perr := Parse(in)
			if perr != tt.wantErr {
				t.Fatalf("Parse(% x) error = %v, want %v", tt.in, perr, tt.wantErr)
			}
			if !bytes.Equal(in, tt.in) {
				t.Errorf("input modified: % x, was % x", in, tt.in)
			}
			if err != nil {
				if h != nil {
					t.Errorf("Parse returned %v with error %v, want nil", h, err)
				}
				return
			}
			if len(h) != len(in) || &h[0] != &in[0] {
				t.Errorf("Parse did not return a view of its input")
			}
			if got := h.VNI(); got != tt.wantVNI {
				t.Errorf("VNI() = %v, want %v", got, tt.wantVNI)
			}
			// Strict validation means the header is exactly what we send.
			enc := make([]byte, HeaderLen)
			Header(enc).Encode(&Fields{VNI: h.VNI()})
			if !bytes.Equal(enc, in[:HeaderLen]) {
				t.Errorf("Encode(VNI %v) = % x, want % x", h.VNI(), enc, in[:HeaderLen])
			}
		})
	}
}

func TestVNI(t *testing.T) {
	tests := []struct {
		vni       VNI
		wantValid bool
		wantStr   string
	}{
		{0, true, "0"},
		{goldenVNI, true, "42"},
		{MaxVNI, true, "16777215"},
		{MaxVNI + 1, false, "16777216"},
		{1<<32 - 1, false, "4294967295"},
	}
	for _, tt := range tests {
		if got := tt.vni.Valid(); got != tt.wantValid {
			t.Errorf("VNI(%d).Valid() = %v, want %v", uint32(tt.vni), got, tt.wantValid)
		}
		if got := tt.vni.String(); got != tt.wantStr {
			t.Errorf("VNI(%d).String() = %q, want %q", uint32(tt.vni), got, tt.wantStr)
		}
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		vni  VNI
		want []byte
	}{
		{"zero", 0, []byte{0x08, 0, 0, 0, 0, 0, 0, 0}},
		{"golden", goldenVNI, wantGoldenHeader},
		{"byte order", 0x123456, []byte{0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0}},
		{"max", MaxVNI, []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0}},
		// Out-of-range VNIs are truncated to 24 bits, never spilling
		// into the reserved byte.
		{"25 bits", MaxVNI + 1 + goldenVNI, wantGoldenHeader},
		{"32 bits", 1<<32 - 1, []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Encode must overwrite whatever the buffer held and stop
			// at HeaderLen.
			b := bytes.Repeat([]byte{0xee}, HeaderLen+2)
			Header(b).Encode(&Fields{VNI: tt.vni})
			if !bytes.Equal(b[:HeaderLen], tt.want) {
				t.Errorf("Encode = % x, want % x", b[:HeaderLen], tt.want)
			}
			if b[HeaderLen] != 0xee || b[HeaderLen+1] != 0xee {
				t.Errorf("Encode wrote past the header: % x", b[HeaderLen:])
			}
		})
	}
}

func TestSetters(t *testing.T) {
	b := bytes.Repeat([]byte{0xee}, HeaderLen)
	h := Header(b)
	h.SetFlags(FlagI)
	h.SetVNI(0x123456)
	want := []byte{0x08, 0xee, 0xee, 0xee, 0x12, 0x34, 0x56, 0xee}
	if !bytes.Equal(b, want) {
		t.Fatalf("after SetFlags, SetVNI: % x, want % x", b, want)
	}
	if h.Flags() != FlagI || h.VNI() != 0x123456 || h.Reserved24() != 0xeeeeee || h.Reserved8() != 0xee {
		t.Errorf("Flags, VNI, Reserved24, Reserved8 = %#02x, %#x, %#x, %#x",
			h.Flags(), uint32(h.VNI()), h.Reserved24(), h.Reserved8())
	}
	if err := h.Validate(); err != ErrReservedBits {
		t.Errorf("Validate() = %v, want %v", err, ErrReservedBits)
	}
	h.SetVNI(1<<32 - 1) // truncated to MaxVNI; the reserved byte is kept
	if h.VNI() != MaxVNI || h.Reserved8() != 0xee {
		t.Errorf("after SetVNI(1<<32-1): VNI %v, Reserved8 %#x, want %v, 0xee", h.VNI(), h.Reserved8(), VNI(MaxVNI))
	}
	h.SetFlags(0)
	if h.HasIFlag() {
		t.Errorf("HasIFlag() = true after SetFlags(0)")
	}
	if got := Header(goldenARPRequest[goldenVXLANOffset : goldenVXLANOffset+HeaderLen]).Payload(); len(got) != 0 {
		t.Errorf("Payload of a bare header = % x, want empty", got)
	}
}

func TestNoAllocs(t *testing.T) {
	pkt := bytes.Clone(goldenARPRequest[goldenVXLANOffset:])
	bad := []byte{0x0c, 0, 0, 0x03, 0, 0, 0x2a, 0}
	out := make([]byte, HeaderLen)
	f := &Fields{VNI: goldenVNI}
	var sink VNI
	tests := []struct {
		name string
		fn   func()
	}{
		{"Parse", func() {
			h, err := Parse(pkt)
			if err != nil {
				panic(err)
			}
			sink = h.VNI()
		}},
		{"Parse error", func() {
			if _, err := Parse(bad); err != ErrReservedBits {
				panic(err)
			}
		}},
		{"Parse truncated", func() {
			if _, err := Parse(pkt[:3]); err != ErrTruncated {
				panic(err)
			}
		}},
		{"VNI", func() { sink = Header(pkt).VNI() }},
		{"Encode", func() { Header(out).Encode(f) }},
		{"SetVNI", func() { Header(out).SetVNI(goldenVNI) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
				t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
			}
		})
	}
	_ = sink
}

var benchVNI VNI

func BenchmarkParse(b *testing.B) {
	pkt := bytes.Clone(goldenARPRequest[goldenVXLANOffset:])
	b.ReportAllocs()
	b.SetBytes(HeaderLen)
	for b.Loop() {
		h, err := Parse(pkt)
		if err != nil {
			b.Fatal(err)
		}
		benchVNI = h.VNI()
	}
}

func BenchmarkEncode(b *testing.B) {
	buf := make([]byte, HeaderLen)
	f := &Fields{VNI: goldenVNI}
	b.ReportAllocs()
	b.SetBytes(HeaderLen)
	for b.Loop() {
		Header(buf).Encode(f)
	}
}

// BenchmarkGopacketDecode is the reference point for BenchmarkParse: the
// same header through gopacket's DecodingLayer interface, layer reused.
func BenchmarkGopacketDecode(b *testing.B) {
	pkt := bytes.Clone(goldenARPRequest[goldenVXLANOffset:])
	var vx layers.VXLAN
	b.ReportAllocs()
	b.SetBytes(HeaderLen)
	for b.Loop() {
		if err := vx.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil {
			b.Fatal(err)
		}
		benchVNI = VNI(vx.VNI)
	}
}

// BenchmarkGopacketSerialize is the reference point for BenchmarkEncode,
// buffer reused.
func BenchmarkGopacketSerialize(b *testing.B) {
	vx := &layers.VXLAN{ValidIDFlag: true, VNI: uint32(goldenVNI)}
	buf := gopacket.NewSerializeBufferExpectedSize(HeaderLen, 0)
	b.ReportAllocs()
	b.SetBytes(HeaderLen)
	for b.Loop() {
		if err := buf.Clear(); err != nil {
			b.Fatal(err)
		}
		if err := vx.SerializeTo(buf, gopacket.SerializeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
