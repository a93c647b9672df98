package geneve

import (
	"bytes"
	"testing"
)

// FuzzParse checks Parse on arbitrary bytes: it never panics, and whatever
// it accepts is self-consistent (the options tile Opt Len exactly, every
// accessor stays in bounds) and re-encodes to the same bytes apart from the
// reserved bits, which receivers ignore. More seeds, named after what they
// exercise, are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte{})                                                              // empty
	f.Add([]byte{0, 0, 0x65, 0x58, 0, 0x10, 0x92})                               // 7 bytes: one short of a header
	f.Add([]byte{0, 0, 0x65, 0x58, 0, 0x10, 0x92, 0})                            // a bare TEB header, VNI 4242
	f.Add(goldenRFC)                                                             // two options, one critical, C bit set
	f.Add([]byte{0x40, 0, 0x65, 0x58, 0, 0, 1, 0})                               // version 1
	f.Add([]byte{0x01, 0, 0x65, 0x58, 0, 0, 1, 0})                               // Opt Len 1 with no options present
	f.Add([]byte{0x01, 0, 0x65, 0x58, 0, 0, 1, 0, 0xff, 0xff, 1, 1})             // an option claiming 4 data bytes in a 4-byte area
	f.Add([]byte{0x01, 0xff, 0x08, 0x00, 0, 0, 1, 0xff, 0xff, 0xff, 0x81, 0xe0}) // all reserved bits set, critical empty option, IPv4 protocol
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b)
		if err != nil {
			if h != nil {
				t.Fatal("header returned with an error")
			}
			return
		}
		if h.Len() > len(b) || h.Version() != 0 {
			t.Fatalf("accepted len %d of %d bytes, version %d", h.Len(), len(b), h.Version())
		}
		total, crit := 0, false
		for o := range h.Options().All() {
			total += OptionHeaderLen + o.DataLen()
			if len(o.Data()) != o.DataLen() {
				t.Fatalf("option data %d bytes, length field says %d", len(o.Data()), o.DataLen())
			}
			crit = crit || o.Critical()
		}
		if total != 4*int(h.OptLen()) {
			t.Fatalf("options cover %d bytes, Opt Len says %d", total, 4*int(h.OptLen()))
		}
		if crit != h.Options().HasCritical() {
			t.Fatal("HasCritical disagrees with the walk")
		}
		_ = h.Payload()
		out := make(Header, h.Len())
		out.Encode(&Fields{OAM: h.OAM(), Critical: h.Critical(), Protocol: h.Protocol(), VNI: h.VNI(), Options: h.Options()})
		want := append([]byte(nil), b[:h.Len()]...)
		want[1] &^= 0x3f // reserved flag bits
		want[7] = 0      // reserved byte
		if crit {
			want[1] |= FlagCritical
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("re-encoded % x, want % x", out, want)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("re-encoded header does not parse: %v", err)
		}
	})
}
