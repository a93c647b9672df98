package l2tp_test

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

// TestReceiveSequence drives a session's receive sequence check with
// crafted sequence numbers: in order, forward jumps (accepted and
// counted), old and duplicate numbers (dropped), the 24-bit wrap, and a
// restarted peer (resynchronised after five consecutive numbers behind, as
// the kernel's nr_oos_count_max of 4).
func TestReceiveSequence(t *testing.T) {
	hs := pair(t, false, memlink.Options{Sync: true}, nil)
	s := sender{t, hs[0], hs[1]}
	self := hs[1].dev.MAC()
	const max = l2tp.MaxSeq
	steps := []struct {
		seq  uint32
		want bool // delivered
	}{
		{0, true}, {1, true}, {2, true},
		{5, true},  // jump over 3 and 4
		{3, false}, // late
		{5, false}, // duplicate
		{6, true},
		{max - 1, false}, // behind by two, in serial arithmetic
		{6 + 1<<23 - 1, true},
		{max, true}, {0, true}, {1, true}, // wrap from 2^24-1 to 0
		{1000, true},
		// A restarted peer counts from 0 again: five consecutive numbers
		// behind are dropped, the sixth resynchronises.
		{0, false}, {1, false}, {2, false}, {3, false}, {4, false}, {5, true}, {6, true},
	}
	var jumps, discards int
	for i, st := range steps {
		o := s.send(message(0x00030000, 42, testCookie, sublayer(true, st.seq), frame(self, 0)))
		if got := o.Dev.Rx == 1; got != st.want {
			t.Errorf("step %d (seq %d): delivered %v, want %v (%+v)", i, st.seq, got, st.want, o)
		}
		if !st.want && o.Dev.Drops[stack.DropPolicy] != 1 {
			t.Errorf("step %d (seq %d): not counted as DropPolicy: %+v", i, st.seq, o)
		}
		if !st.want {
			discards++
		}
	}
	jumps = 4 // 2->5, 6->6+2^23-1, that -> max, 1->1000
	want := l2tp.SeqStats{Discards: uint64(discards), Jumps: uint64(jumps), Resyncs: 1}
	if got := hs[1].dev.SeqStats(); got != want {
		t.Errorf("SeqStats %+v, want %+v", got, want)
	}
}

// TestSendSequence reads what a session sends from a peer tunnel that has
// no such session (so its data messages reach the control plane's UDP
// queue) and checks every header field: the peer's session ID, the cookie,
// and S=1 with sequence numbers 0, 1, 2, ... without gaps.
func TestSendSequence(t *testing.T) {
	hs := pair(t, true, memlink.Options{Sync: true}, func(i int, c *l2tp.Config) {
		if i == 0 {
			c.PeerID = 77 // b has no session 77
			c.Cookie = []byte{1, 2, 3, 4, 5, 6, 7, 8}
		}
	})
	a, b := hs[0], hs[1]
	// Ping b: ARP/NDP and echo requests go out; none are answered, since
	// b passes them to its control plane.
	go e2eQuietPing(a, b)
	pc := b.sock.Tunnel().PacketConn()
	buf := make([]byte, 2048)
	for want := uint32(0); want < 3; want++ {
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		h, err := l2tp.Parse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ValidateSession(8, l2tp.L2SpecDefault); err != nil {
			t.Fatal(err)
		}
		sl := h.Sublayer(8)
		if h.SessionID() != 77 || string(h.Cookie(8)) != "\x01\x02\x03\x04\x05\x06\x07\x08" || !sl.SeqValid() || sl.Seq() != want || h.Reserved() != 0 || h.Flags() != 3 {
			t.Errorf("message %d: % x", want, buf[:16])
		}
		if src := net.HardwareAddr(h.Payload(8, l2tp.L2SpecDefault)[6:12]); src.String() != a.dev.MAC().String() {
			t.Errorf("message %d: inner source MAC %v, want %v", want, src, a.dev.MAC())
		}
	}
	if binary.BigEndian.Uint32(buf[:4]) != 0x00030000 {
		t.Errorf("first word % x", buf[:4])
	}
}

// e2eQuietPing sends a few echo requests from a to b's inner IPv6 address
// and ignores the outcome.
func e2eQuietPing(a, b *host) {
	for i := range 3 {
		ctx, cancel := contextWithTimeout(100 * time.Millisecond)
		a.st.Ping(ctx, b.inner[1].Addr(), uint16(i), 8)
		cancel()
	}
}
