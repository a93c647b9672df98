package fou_test

import (
	"bytes"
	"testing"

	"github.com/udptunnel/udptunnel/tunnels/fou"
)

// FuzzParseGUE checks that ParseGUE never panics, never accepts what it
// should not (a header longer than the input, flags, variants 2 and 3) and
// that an accepted variant 0 header re-encodes to the same first word.
func FuzzParseGUE(f *testing.F) {
	f.Add([]byte{})                                   // empty: truncated
	f.Add([]byte{0x00, 0x04, 0x00})                   // three bytes of variant 0: truncated
	f.Add([]byte{0x00, 0x04, 0x00, 0x00, 0x45})       // variant 0, IPIP, one payload byte
	f.Add([]byte{0x20, 0x01, 0x00, 0x00})             // control message, ctype 1
	f.Add([]byte{0x02, 0x29, 0x00, 0x00, 1, 2, 3})    // Hlen 2 with only 3 extension bytes: overrun
	f.Add([]byte{0x01, 0x29, 0x00, 0x00, 1, 2, 3, 4}) // Hlen 1, extension present
	f.Add([]byte{0x00, 0x04, 0x00, 0x01})             // the kernel's private flag: unknown here
	f.Add([]byte{0x45, 0x00, 0x00, 0x14})             // variant 1: an IPv4 header
	f.Add([]byte{0x60, 0x00, 0x00, 0x00})             // variant 1: an IPv6 header
	f.Add([]byte{0x50})                               // variant 1 with IP version 5
	f.Add([]byte{0xc0, 0x04, 0x00, 0x00})             // variant 3
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := fou.ParseGUE(b)
		if err != nil {
			if h != nil {
				t.Fatalf("ParseGUE(% x) returned a header with error %v", b, err)
			}
			return
		}
		if h.HeaderLen() > len(b) || len(h.Payload()) != len(b)-h.HeaderLen() {
			t.Fatalf("header length %d of %d bytes", h.HeaderLen(), len(b))
		}
		switch h.Variant() {
		case 0:
			if h.Flags() != 0 {
				t.Fatalf("accepted flags %#x", h.Flags())
			}
			w := make([]byte, fou.GUEHeaderLen)
			fou.GUE(w).Encode(&fou.GUEFields{Control: h.Control(), Proto: h.Proto(), ExtLen: h.HeaderLen() - fou.GUEHeaderLen})
			if !bytes.Equal(w, b[:fou.GUEHeaderLen]) {
				t.Fatalf("re-encoded % x, parsed % x", w, b[:fou.GUEHeaderLen])
			}
		case 1:
			if p := h.InnerProto(); p != 4 && p != 41 {
				t.Fatalf("variant 1 inner protocol %d", p)
			}
		default:
			t.Fatalf("accepted variant %d", h.Variant())
		}
	})
}

// FuzzParseGRE checks that ParseGRE never panics, accepts only version 0
// without RFC 1701 bits and with all announced fields, and that an
// accepted header re-encodes to the same bytes (bits 6-12 of reserved0,
// reserved1 and the checksum aside).
func FuzzParseGRE(f *testing.F) {
	f.Add([]byte{})                                                                 // empty: truncated
	f.Add([]byte{0x00, 0x00, 0x08, 0x00})                                           // minimal, IPv4
	f.Add([]byte{0x20, 0x00, 0x86, 0xdd, 0, 0, 0, 42})                              // key 42, IPv6
	f.Add([]byte{0xb0, 0x00, 0x08, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2}) // C, K, S
	f.Add([]byte{0x30, 0x00, 0x08, 0x00, 0, 0, 0, 1})                               // K and S, sequence missing
	f.Add([]byte{0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 0})                               // version 1 (PPTP)
	f.Add([]byte{0x40, 0x00, 0x08, 0x00})                                           // routing present
	f.Add([]byte{0x07, 0xf8, 0x08, 0x00})                                           // recursion control and reserved bits
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := fou.ParseGRE(b)
		if err != nil {
			return
		}
		if h.HeaderLen() > len(b) || h.Flags()&0x4c07 != 0 {
			t.Fatalf("accepted % x", b)
		}
		f := fou.GREFields{Protocol: h.Protocol(), Checksum: h.HasChecksum(), HasKey: h.HasKey(), Key: h.Key(), HasSeq: h.HasSeq(), Seq: h.Seq()}
		w := make([]byte, f.Len())
		fou.GRE(w).Encode(&f)
		got := bytes.Clone(b[:h.HeaderLen()])
		got[0] &= 0xf0
		got[1] = 0
		if h.HasChecksum() {
			copy(got[4:8], []byte{0, 0, 0, 0})
		}
		if !bytes.Equal(w, got) {
			t.Fatalf("re-encoded % x, parsed % x", w, got)
		}
	})
}
