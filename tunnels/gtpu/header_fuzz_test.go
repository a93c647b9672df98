package gtpu_test

import (
	"bytes"
	"testing"

	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

// FuzzParse checks that Parse never panics, that what it accepts has
// consistent lengths and a walkable extension chain, and that re-encoding
// the parsed fields gives the same mandatory and optional octets. The file
// seeds in testdata/fuzz/FuzzParse are named for what they exercise.
func FuzzParse(f *testing.F) {
	f.Add(goldenShort)                                                     // scapy's G-PDU, short header
	f.Add(goldenPSC)                                                       // PDU Session Container extension
	f.Add(goldenEcho)                                                      // Echo Request with S
	f.Add(goldenTwoExt)                                                    // S, PN and two extensions
	f.Add(goldenShort[:7])                                                 // truncated mandatory header
	f.Add(goldenPSC[:13])                                                  // extension chain cut short
	f.Add([]byte{0x34, 0xff, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0x85, 0, 0, 0, 0}) // extension length 0
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := gtpu.Parse(b)
		if err != nil {
			if h != nil {
				t.Fatal("non-nil header with an error")
			}
			return
		}
		if len(h) != gtpu.HeaderLen+int(h.Length()) || len(h) > len(b) {
			t.Fatalf("header of %d octets for length %d in %d", len(h), h.Length(), len(b))
		}
		hl := h.HeaderLen()
		if hl < gtpu.HeaderLen || hl > len(h) || len(h.Payload()) != len(h)-hl {
			t.Fatalf("header length %d of %d", hl, len(h))
		}
		ext := gtpu.LongHeaderLen
		for it := h.Extensions(); ; {
			_, e, ok := it.Next()
			if !ok {
				break
			}
			ext += e.Len()
			_ = e.Content()
		}
		if h.HasExt() && ext != hl {
			t.Fatalf("extensions end at %d, header at %d", ext, hl)
		}
		fl := gtpu.Fields{Type: h.Type(), Length: h.Length(), TEID: h.TEID()}
		if h.HasOptional() {
			fl.HasSeq, fl.Seq, fl.HasNPDU, fl.NPDU = h.HasSeq(), h.Seq(), h.HasNPDU(), h.NPDU()
			if h.HasExt() {
				fl.NextExt = h.NextExt()
			}
		}
		out := make([]byte, gtpu.LongHeaderLen)
		n := gtpu.Header(out).Encode(&fl)
		if !bytes.Equal(out[1:8], h[1:8]) {
			t.Fatalf("re-encoded % x, parsed % x", out[:n], h[:8])
		}
		if h.HasSeq() && (n != gtpu.LongHeaderLen || !bytes.Equal(out[8:10], h[8:10])) {
			t.Fatalf("sequence number: re-encoded % x, parsed % x", out[:n], h[:12])
		}
		if h.HasNPDU() && (n != gtpu.LongHeaderLen || out[10] != h[10]) {
			t.Fatalf("N-PDU: re-encoded % x, parsed % x", out[:n], h[:12])
		}
		if h.HasExt() && h.NextExt() != 0 && (n != gtpu.LongHeaderLen || out[11] != h[11]) {
			t.Fatalf("next extension: re-encoded % x, parsed % x", out[:n], h[:12])
		}
	})
}
