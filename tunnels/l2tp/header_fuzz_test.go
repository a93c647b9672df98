package l2tp_test

import (
	"bytes"
	"testing"

	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

// FuzzParse checks that Parse and the session accessors never panic and
// never read out of bounds, and that a parsed data header survives a round
// trip through its Fields and Encode for every session layout the bytes
// can hold. Extra seeds are in testdata/fuzz/FuzzParse, named for what
// they exercise.
func FuzzParse(f *testing.F) {
	f.Add([]byte{})                                                     // empty: truncated
	f.Add([]byte{0x00})                                                 // one byte: truncated
	f.Add([]byte{0x00, 0x03, 0x00, 0x00, 0, 0, 0})                      // 7 bytes of a v3 data header: truncated
	f.Add([]byte{0x00, 0x03, 0x00, 0x00, 0, 0, 0, 42})                  // bare header, session 42
	f.Add(goldenData)                                                   // golden: cookie, sublayer S=1 seq 7, ICMP frame
	f.Add([]byte{0xc8, 0x03, 0x00, 0x0c, 0, 0, 0, 1, 0, 0, 0, 0})       // a v3 control message (T, L, S bits)
	f.Add([]byte{0x00, 0x02, 0x00, 0x00, 0, 0, 0, 42})                  // L2TPv2 data: bad version
	f.Add([]byte{0x7f, 0xf3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbf}) // every ignored bit set, session 2^32-1
	f.Add([]byte{0x00, 0x03, 0x00, 0x00, 0, 0, 0, 0, 0x40, 0xff, 0xff}) // session 0, short sublayer
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := l2tp.Parse(b)
		if err != nil {
			if h != nil {
				t.Fatalf("error %v with a header", err)
			}
			return
		}
		if h.IsControl() || h.Version() != l2tp.Version || len(h) < l2tp.HeaderLen {
			t.Fatalf("Parse accepted % x", b)
		}
		for _, cookieLen := range []int{0, 4, 8} {
			for _, spec := range []l2tp.L2SpecType{l2tp.L2SpecNone, l2tp.L2SpecDefault} {
				if h.ValidateSession(cookieLen, spec) != nil {
					if len(b) >= l2tp.HeaderLen+cookieLen+spec.Len() {
						t.Fatalf("ValidateSession(%d, %v) refused %d bytes", cookieLen, spec, len(b))
					}
					continue
				}
				fl := l2tp.Fields{SessionID: h.SessionID(), Cookie: h.Cookie(cookieLen), L2Spec: spec}
				if spec == l2tp.L2SpecDefault {
					fl.SeqValid, fl.Seq = h.Sublayer(cookieLen).SeqValid(), h.Sublayer(cookieLen).Seq()
				}
				out := make([]byte, fl.Len())
				l2tp.Header(out).Encode(&fl)
				back, err := l2tp.Parse(out)
				if err != nil {
					t.Fatalf("re-parse of % x: %v", out, err)
				}
				if back.SessionID() != h.SessionID() || !bytes.Equal(back.Cookie(cookieLen), h.Cookie(cookieLen)) {
					t.Fatalf("round trip changed % x into % x", b[:len(out)], out)
				}
				if spec == l2tp.L2SpecDefault && (back.Sublayer(cookieLen).Seq() != fl.Seq && fl.SeqValid) {
					t.Fatalf("round trip changed the sequence number: % x into % x", b[:len(out)], out)
				}
				_ = h.Payload(cookieLen, spec)
			}
		}
	})
}
