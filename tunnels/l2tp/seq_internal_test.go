package l2tp

import "testing"

// TestSendSeqWraps checks that the transmit sequence number wraps from
// 2^24-1 to 0 (RFC 3931 §4.6: a 24-bit field; the kernel masks ns with
// 0xffffff).
func TestSendSeqWraps(t *testing.T) {
	_, _, d := voidHost(t, benchConfig())
	pkt := innerFrame(d)
	defer pkt.DecRef()
	d.ns.Store(MaxSeq)
	for _, want := range []uint32{0, 1} {
		if err := (*transmitter)(d).Transmit(pkt); err != nil {
			t.Fatal(err)
		}
		if got := d.ns.Load() & MaxSeq; got != want {
			t.Fatalf("next sequence number %d, want %d", got, want)
		}
	}
}
