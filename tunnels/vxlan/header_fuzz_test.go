package vxlan

import (
	"bytes"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// FuzzParse checks that Parse never panics, returns only its sentinel
// errors, and agrees with Encode and with gopacket:
//
//   - on success the input's first HeaderLen bytes are exactly what Encode
//     writes for the parsed VNI (strict validation leaves no bit free);
//   - on ErrReservedBits they differ from Encode's only in reserved bits,
//     so a lenient receiver reads the VNI a plain sender meant;
//   - whenever the header is long enough, gopacket reads the same VNI and
//     I flag.
//
// More seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	// A Linux kernel ARP request from testdata/vxlan.pcap, inner frame
	// included: the common case, with a payload.
	f.Add(bytes.Clone(goldenARPRequest[goldenVXLANOffset:]))
	// The bare golden header, VNI 42: success with an empty payload.
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 0x2a, 0})
	// Max VNI: every VNI bit set, next to the reserved byte.
	f.Add([]byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0})
	// One byte short of a header: ErrTruncated at the boundary.
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 0x2a})
	// Empty input: ErrTruncated with nothing to read.
	f.Add([]byte{})
	// All zero: a header without the I flag, ErrNoIFlag.
	f.Add(make([]byte, HeaderLen))
	// All ones: I flag set, every reserved bit set, ErrReservedBits.
	f.Add(bytes.Repeat([]byte{0xff}, HeaderLen))
	// scapy's VXLAN over Ethernet (testdata/encaps.pcap): GPE P flag and
	// next protocol 3 in the reserved bits.
	f.Add([]byte{0x0c, 0, 0, 0x03, 0, 0, 0x2a, 0})
	// GBP: G flag, Don't Learn, policy ID 0x1234.
	f.Add([]byte{0x88, 0x40, 0x12, 0x34, 0, 0, 0x2a, 0})
	// Only the trailing reserved byte set.
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 0x2a, 0x01})

	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		h, err := Parse(b)
		if !bytes.Equal(b, in) {
			t.Fatalf("Parse modified its input: % x, was % x", b, in)
		}

		enc := make([]byte, HeaderLen)
		switch err {
		case nil:
			if len(h) != len(b) {
				t.Fatalf("Parse returned %d bytes of %d", len(h), len(b))
			}
			if !h.VNI().Valid() {
				t.Fatalf("VNI() = %v, not Valid", h.VNI())
			}
			Header(enc).Encode(&Fields{VNI: h.VNI()})
			if !bytes.Equal(enc, b[:HeaderLen]) {
				t.Fatalf("Encode(Parse(% x).VNI()) = % x", b[:HeaderLen], enc)
			}
			if !bytes.Equal(h.Payload(), b[HeaderLen:]) {
				t.Fatalf("Payload() = % x, want % x", h.Payload(), b[HeaderLen:])
			}
		case ErrTruncated:
			if h != nil || len(b) >= HeaderLen {
				t.Fatalf("Parse(% x) = %v, %v", b, h, err)
			}
		case ErrNoIFlag:
			if h != nil || len(b) < HeaderLen || b[0]&FlagI != 0 {
				t.Fatalf("Parse(% x) = %v, %v", b, h, err)
			}
		case ErrReservedBits:
			if h != nil || len(b) < HeaderLen || b[0]&FlagI == 0 {
				t.Fatalf("Parse(% x) = %v, %v", b, h, err)
			}
			// The lenient reading: only reserved bits differ from a
			// plain header with the same VNI, and at least one does.
			Header(enc).Encode(&Fields{VNI: Header(b).VNI()})
			nonReserved := []byte{FlagI, 0, 0, 0, 0xff, 0xff, 0xff, 0}
			diff := false
			for i := range HeaderLen {
				x := enc[i] ^ b[i]
				if x&nonReserved[i] != 0 {
					t.Fatalf("byte %d: % x vs Encode's % x differ outside reserved bits", i, b[:HeaderLen], enc)
				}
				diff = diff || x != 0
			}
			if !diff {
				t.Fatalf("ErrReservedBits for % x, which Encode reproduces", b[:HeaderLen])
			}
		default:
			t.Fatalf("Parse(% x) returned unexpected error %v", b, err)
		}

		// Cross-check with gopacket on every input long enough for both.
		var vx layers.VXLAN
		if gerr := vx.DecodeFromBytes(b, gopacket.NilDecodeFeedback); (gerr == nil) != (len(b) >= HeaderLen) {
			t.Fatalf("gopacket error %v for %d bytes", gerr, len(b))
		}
		if len(b) >= HeaderLen {
			hb := Header(b)
			if VNI(vx.VNI) != hb.VNI() || vx.ValidIDFlag != hb.HasIFlag() {
				t.Fatalf("gopacket VNI %d, I %v; ours %v, %v", vx.VNI, vx.ValidIDFlag, hb.VNI(), hb.HasIFlag())
			}
		}
	})
}
