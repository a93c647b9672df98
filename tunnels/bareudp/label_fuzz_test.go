package bareudp_test

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/udptunnel/udptunnel/tunnels/bareudp"
)

// FuzzParseLabelStack checks ParseLabelStack on any input: it never panics,
// a result ends at the first S bit within MaxLabelDepth entries, re-encoding
// its entries gives the same bytes, and gopacket's MPLS decoder reads the
// same fields entry by entry.
func FuzzParseLabelStack(f *testing.F) {
	f.Add([]byte{})                                               // empty: truncated
	f.Add([]byte{0x00, 0x06, 0x41})                               // three bytes: truncated
	f.Add([]byte{0x00, 0x06, 0x41, 0x40, 0x45})                   // label 100, S, TTL 64, then an IPv4 nibble (RFC 7510 golden)
	f.Add([]byte{0x00, 0x3e, 0x80, 0x40, 0x00, 0x00, 0x11, 0xff}) // label 1000 without S over IPv4 explicit null with S
	f.Add(make([]byte, 4*bareudp.MaxLabelDepth))                  // 30 entries, none with S: too deep
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})                         // every bit set: label 2^20-1, TC 7, S, TTL 255
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := bareudp.ParseLabelStack(b)
		if err != nil {
			if ls != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		n := ls.Depth()
		if n < 1 || n > bareudp.MaxLabelDepth || len(ls) != n*bareudp.EntryLen {
			t.Fatalf("depth %d, %d bytes", n, len(ls))
		}
		var p gopacket.Packet = gopacket.NewPacket(b, layers.LayerTypeMPLS, gopacket.Lazy)
		got := p.Layers()
		for i := 0; i < n; i++ {
			e := ls.Entry(i)
			if e.BottomOfStack() != (i == n-1) {
				t.Fatalf("entry %d S=%v in a stack of %d", i, e.BottomOfStack(), n)
			}
			if bareudp.MakeEntry(e.Fields()) != e {
				t.Fatalf("entry %d %#08x does not survive Fields/MakeEntry", i, uint32(e))
			}
			if i >= len(got) {
				t.Fatalf("gopacket decoded %d layers, we %d entries", len(got), n)
			}
			m, ok := got[i].(*layers.MPLS)
			if !ok {
				t.Fatalf("gopacket layer %d is %v, want MPLS", i, got[i].LayerType())
			}
			if m.Label != uint32(e.Label()) || m.TrafficClass != e.TC() || m.StackBottom != e.BottomOfStack() || m.TTL != e.TTL() {
				t.Fatalf("entry %d: ours %+v, gopacket %+v", i, e.Fields(), m)
			}
		}
	})
}
