package l2tp_test

// Malformed input on the tunnel port: every datagram is delivered, handed
// to the control plane's UDP queue, or dropped and counted under its
// reason; nothing panics.

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

// message returns an L2TPv3 data header with the given first word and
// session, then rest.
func message(word uint32, id uint32, rest ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, word)
	b = binary.BigEndian.AppendUint32(b, id)
	for _, r := range rest {
		b = append(b, r...)
	}
	return b
}

// sublayer returns a Default L2-Specific Sublayer word.
func sublayer(s bool, seq uint32) []byte {
	w := seq & l2tp.MaxSeq
	if s {
		w |= 0x40000000
	}
	return binary.BigEndian.AppendUint32(nil, w)
}

// frame returns an Ethernet header to dst from a peer MAC with the local
// experimental EtherType (the inner stack ignores it), then n zero bytes.
func frame(dst net.HardwareAddr, n int) []byte {
	b := append(append([]byte{}, dst...), 0x02, 0xcc, 0, 0, 0, 1, 0x88, 0xb5)
	return append(b, make([]byte, n)...)
}

// sender sends raw UDP payloads to to's tunnel port from the tunnel port of
// from (the receiving tunnel is connected to that address), and reports
// the counter changes and what was passed to the control plane.
type sender struct {
	t        *testing.T
	from, to *host
}

type outcome struct {
	Sock, Dev tunneltest.Counts
	Passed    bool
}

func (s sender) send(payload []byte) outcome {
	t := s.t
	t.Helper()
	sock, dev := s.to.sock.Tunnel().Counters(), s.to.dev.Counters()
	sb, db, pb := sock.Stats(), dev.Stats(), s.to.sock.Tunnel().Counters().Stats().Passed
	if err := s.from.sock.Tunnel().SendDatagram(payload, netip.AddrPortFrom(s.to.outer, l2tp.DefaultPort)); err != nil {
		t.Fatal(err)
	}
	tunneltest.Eventually(t, "the datagram to reach the socket", func() bool {
		st := sock.Stats()
		return st.RxPackets+st.TotalDrops() > sb.RxPackets+sb.TotalDrops()
	})
	o := outcome{Sock: tunneltest.Since(sb, sock).RxOnly(), Dev: tunneltest.Since(db, dev).RxOnly(), Passed: s.to.sock.Tunnel().Counters().Stats().Passed != pb}
	if o.Passed {
		// The control plane reads exactly the datagram, from the peer.
		pc := s.to.sock.Tunnel().PacketConn()
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 65536)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("reading the passed datagram: %v", err)
		}
		if !bytes.Equal(buf[:n], payload) {
			t.Errorf("control plane read % x, want % x", buf[:n], payload)
		}
		if got := from.(*net.UDPAddr).AddrPort(); got.Addr().Unmap() != s.from.outer || got.Port() != l2tp.DefaultPort {
			t.Errorf("control plane read from %v, want %v:%d", got, s.from.outer, l2tp.DefaultPort)
		}
	}
	return o
}

// TestMalformedDatagrams sends crafted datagrams to a tunnel with session
// 42 (4-byte cookie, default sublayer, seq both) over both underlay
// families and checks which counter each one moves.
func TestMalformedDatagrams(t *testing.T) {
	sockDrop := func(r stack.DropReason) outcome {
		return outcome{Sock: tunneltest.Counts{Rx: 1, Drops: map[stack.DropReason]uint64{r: 1}}}
	}
	devDrop := func(r stack.DropReason) outcome {
		return outcome{Sock: tunneltest.Counts{Rx: 1}, Dev: tunneltest.Counts{Drops: map[stack.DropReason]uint64{r: 1}}}
	}
	passed := outcome{Sock: tunneltest.Counts{Rx: 1}, Passed: true}
	delivered := outcome{Sock: tunneltest.Counts{Rx: 1}, Dev: tunneltest.Counts{Rx: 1}}
	const v3 = 0x00030000
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "outer4", true: "outer6"}[v6], func(t *testing.T) {
			hs := pair(t, v6, memlink.Options{Sync: true}, nil)
			s := sender{t, hs[0], hs[1]}
			self := hs[1].dev.MAC()
			// seq is the last sequence number delivered: rows that are to
			// be delivered take the next one, rows that are to be dropped
			// use seq+1 without taking it.
			seq := uint32(100)
			next := func() uint32 { seq++; return seq }
			for _, tc := range []struct {
				name    string
				payload func() []byte
				want    outcome
			}{
				{"first sequenced message sets the expected number", func() []byte { return message(v3, 42, testCookie, sublayer(true, seq), frame(self, 0)) }, delivered},
				{"empty", func() []byte { return nil }, sockDrop(stack.DropTruncated)},
				{"one byte", func() []byte { return []byte{0} }, sockDrop(stack.DropTruncated)},
				{"7 bytes of header", func() []byte { return message(v3, 42)[:7] }, sockDrop(stack.DropTruncated)},
				{"version 2 data", func() []byte { return message(0x00020000, 42, testCookie, sublayer(true, seq+1), frame(self, 0)) }, sockDrop(stack.DropBadHeader)},
				{"version 0", func() []byte { return message(0, 42, testCookie, sublayer(true, seq+1), frame(self, 0)) }, sockDrop(stack.DropBadHeader)},
				{"version 15", func() []byte { return message(0x000f0000, 42, testCookie, sublayer(true, seq+1), frame(self, 0)) }, sockDrop(stack.DropBadHeader)},
				{"version 2 in 4 bytes", func() []byte { return []byte{0, 2, 0, 0} }, sockDrop(stack.DropBadHeader)},
				{"control message (T bit)", func() []byte { return message(0xc8030014, 0, make([]byte, 12)) }, passed},
				{"L2TPv2 control message", func() []byte { return message(0xc802000c, 0x00010000, make([]byte, 4)) }, passed},
				{"bare T bit in 2 bytes", func() []byte { return []byte{0x80, 0x03} }, passed},
				{"session 0", func() []byte { return message(v3, 0, testCookie, sublayer(true, 1), frame(self, 0)) }, passed},
				{"unknown session", func() []byte { return message(v3, 4242, testCookie, sublayer(true, 1), frame(self, 0)) }, passed},
				{"largest session ID, unknown", func() []byte { return message(v3, 0xffffffff, frame(self, 0)) }, passed},
				{"header alone", func() []byte { return message(v3, 42) }, devDrop(stack.DropTruncated)},
				{"cookie without sublayer", func() []byte { return message(v3, 42, testCookie) }, devDrop(stack.DropTruncated)},
				{"13 bytes of frame", func() []byte { return message(v3, 42, testCookie, sublayer(true, seq+1), frame(self, 0)[:13]) }, devDrop(stack.DropTruncated)},
				{"wrong cookie", func() []byte {
					return message(v3, 42, []byte{0xc0, 0x0c, 0x1e, 0x43}, sublayer(true, seq+1), frame(self, 0))
				}, devDrop(stack.DropPolicy)},
				{"no cookie", func() []byte { return message(v3, 42, sublayer(true, seq+1), frame(self, 4)) }, devDrop(stack.DropPolicy)},
				{"S bit clear, seq required", func() []byte { return message(v3, 42, testCookie, sublayer(false, 0), frame(self, 0)) }, devDrop(stack.DropPolicy)},
				{"old sequence number", func() []byte { return message(v3, 42, testCookie, sublayer(true, 50), frame(self, 0)) }, devDrop(stack.DropPolicy)},
				{"duplicate sequence number", func() []byte { return message(v3, 42, testCookie, sublayer(true, seq), frame(self, 0)) }, devDrop(stack.DropPolicy)},
				{"frame for another MAC", func() []byte {
					return message(v3, 42, testCookie, sublayer(true, next()), frame(net.HardwareAddr{2, 0xbb, 0, 0, 0, 1}, 0))
				}, devDrop(stack.DropNotForUs)},
				{"bare Ethernet header", func() []byte { return message(v3, 42, testCookie, sublayer(true, next()), frame(self, 0)) }, delivered},
				{"x bits and reserved set (ignored)", func() []byte { return message(0x7ff3ffff, 42, testCookie, sublayer(true, next()), frame(self, 0)) }, delivered},
				{"sublayer x bits set (ignored)", func() []byte {
					sl := sublayer(true, next())
					sl[0] |= 0xbf
					return message(v3, 42, testCookie, sl, frame(self, 0))
				}, delivered},
				{"forward jump of the sequence", func() []byte { seq += 1000; return message(v3, 42, testCookie, sublayer(true, seq), frame(self, 0)) }, delivered},
				// Receive does not drop on MTU (a GSO peer sends ~64 KB).
				{"9000-byte frame", func() []byte { return message(v3, 42, testCookie, sublayer(true, next()), frame(self, 9000)) }, delivered},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s.t = t
					got := s.send(tc.payload())
					if diff := cmp.Diff(tc.want, got); diff != "" {
						t.Errorf("counter changes (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}
