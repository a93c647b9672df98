//go:build linux

package hostudp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gsoPacket returns an outer IPv4/UDP packet carrying VXLAN, an inner
// Ethernet header and an inner IPv4/TCP GSO segment of n data bytes with
// its checksums unfinished, as a device with GSO and checksum offload
// hands it to the underlay.
func gsoPacket(n int, flags header.TCPFlags) (*stack.PacketBuffer, []byte) {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*31 + 7)
	}
	innerLen := 20 + 20 + n
	b := make([]byte, 20+8+8+14+innerLen)
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(min(len(b), 0xffff)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 2})})
	header.UDP(b[20:]).Encode(&header.UDPFields{SrcPort: 50000, DstPort: 4789, Length: uint16(len(b) - 20)})
	copy(b[28:], []byte{0x08, 0, 0, 0, 0, 0, 42, 0})
	eth := b[36:]
	eth[12], eth[13] = 0x08, 0x00
	in := b[50:]
	header.IPv4(in).Encode(&header.IPv4Fields{TotalLength: uint16(min(innerLen, 0xffff)), ID: 100, TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr:  tcpip.AddrFrom4([4]byte{192, 168, 42, 1}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2})})
	header.TCP(in[20:]).Encode(&header.TCPFields{SrcPort: 5001, DstPort: 40000, SeqNum: 1000, AckNum: 7,
		DataOffset: 20, Flags: flags, WindowSize: 1000})
	copy(in[40:], data)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, MSS: 1400, L3HdrLen: 20}
	return pkt, data
}

// msgBytes returns the bytes of message i of tb, gathered from its
// iovecs.
func msgBytes(tb *txBatch, i int) []byte {
	h := &tb.hs[i].hdr
	var b []byte
	for _, v := range unsafe.Slice(h.Iov, h.Iovlen) {
		b = append(b, unsafe.Slice(v.Base, v.Len)...)
	}
	return b
}

// TestSegment cuts a 5000-byte inner TCP segment with MSS 1400 into four
// inner segments in one GSO train: each a valid inner IPv4 packet with
// the right length, ID, sequence number, flags and TCP checksum, and the
// data in order.
func TestSegment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gso   bool
		split int // the packet's buffer in views of this size (0: one view)
	}{
		{"gso", true, 0}, {"no-gso", false, 0},
		// Views that end inside segments and inside headers.
		{"gso-views", true, 333},
		// More views than maxGatherViews: the payload is copied.
		{"gso-many-views", true, 50},
	} {
		gso := tc.gso
		t.Run(tc.name, func(t *testing.T) {
			e := &Endpoint{cfg: config{Config: Config{InnerOffset: 22, Batch: 64}}}
			s := &hostSocket{e: e}
			s.gso.Store(gso)
			tb := newTxBatch(64)
			tb.sock = s
			pkt, data := gsoPacket(5000, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin)
			if tc.split > 0 {
				pkt = splitViews(pkt, tc.split)
			}
			defer pkt.DecRef()
			var o outgoing
			if parseOutgoing(pkt, &o) != parseOK {
				t.Fatal("outer packet does not parse")
			}
			e.addInner(tb, pkt, &o)
			var segs [][]byte
			for i := range tb.msgs {
				m := &tb.msgs[i]
				b := msgBytes(tb, i)
				if len(b) != m.bytes {
					t.Errorf("message %d: %d bytes, counted %d", i, len(b), m.bytes)
				}
				for off := 0; off < len(b); off += m.segSize {
					segs = append(segs, b[off:min(off+m.segSize, len(b))])
				}
			}
			if wantMsgs := map[bool]int{true: 1, false: 4}[gso]; len(tb.msgs) != wantMsgs || len(segs) != 4 {
				t.Fatalf("%d messages, %d segments; want %d and 4", len(tb.msgs), len(segs), wantMsgs)
			}
			var got []byte
			for i, seg := range segs {
				in := seg[22:]
				ip := header.IPv4(in)
				if !ip.IsValid(len(in)) || !ip.IsChecksumValid() || ip.ID() != uint16(100+i) {
					t.Errorf("segment %d: inner IPv4 header %x (ID %d)", i, in[:20], ip.ID())
				}
				tcp := header.TCP(in[20:])
				payload := in[40:]
				want := min(1400, 5000-1400*i)
				if len(payload) != want || tcp.SequenceNumber() != 1000+uint32(1400*i) {
					t.Errorf("segment %d: %d bytes at seq %d, want %d at %d", i, len(payload), tcp.SequenceNumber(), want, 1000+1400*i)
				}
				wantFlags := header.TCPFlagAck
				if i == 3 {
					wantFlags |= header.TCPFlagPsh | header.TCPFlagFin
				}
				if tcp.Flags() != wantFlags {
					t.Errorf("segment %d: flags %v, want %v", i, tcp.Flags(), wantFlags)
				}
				if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(payload, 0), uint16(len(payload))) {
					t.Errorf("segment %d: TCP checksum invalid", i)
				}
				got = append(got, payload...)
			}
			if string(got) != string(data) {
				t.Error("segments' data differs from the original")
			}
		})
	}
}

// splitViews returns a copy of pkt (and releases pkt) whose buffer is
// made of views of n bytes.
func splitViews(pkt *stack.PacketBuffer, n int) *stack.PacketBuffer {
	b := pkt.ToBuffer()
	flat := b.Flatten()
	b.Release()
	gso := pkt.GSOOptions
	pkt.DecRef()
	var buf buffer.Buffer
	for off := 0; off < len(flat); off += n {
		buf.Append(buffer.NewViewWithData(flat[off:min(off+n, len(flat))]))
	}
	p := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buf})
	p.GSOOptions = gso
	return p
}

// TestInnerChecksum: a packet that is not GSO still gets its inner TCP
// checksum finished.
func TestInnerChecksum(t *testing.T) {
	e := &Endpoint{cfg: config{Config: Config{InnerOffset: 22, Batch: 64}}}
	s := &hostSocket{e: e}
	tb := newTxBatch(64)
	tb.sock = s
	pkt, _ := gsoPacket(100, header.TCPFlagAck)
	pkt.GSOOptions = stack.GSO{}
	defer pkt.DecRef()
	var o outgoing
	parseOutgoing(pkt, &o)
	e.addInner(tb, pkt, &o)
	in := msgBytes(tb, 0)[22:]
	ip := header.IPv4(in)
	tcp := header.TCP(in[20:])
	if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(in[40:], 0), uint16(len(in)-40)) {
		t.Error("inner TCP checksum not finished")
	}
}

// TestResendArena: a train the kernel refused as such (EIO, EINVAL) is
// sent datagram by datagram, each cut from the train's iovecs at the
// segment size, whether its payload points into the packet's views or was
// copied.
func TestResendArena(t *testing.T) {
	for _, split := range []int{0, 333, 50} {
		t.Run(fmt.Sprint(split), func(t *testing.T) {
			sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			e, err := New(Config{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Ports: []uint16{freePortInternal(t)}, InnerOffset: 22})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			tb := newTxBatch(64)
			tb.sock = e.socks[0]
			tb.sock.gso.Store(true)
			pkt, _ := gsoPacket(5000, header.TCPFlagAck)
			if split > 0 {
				pkt = splitViews(pkt, split)
			}
			defer pkt.DecRef()
			var o outgoing
			if parseOutgoing(pkt, &o) != parseOK {
				t.Fatal("outer packet does not parse")
			}
			o.dst, o.dstPort = netip.MustParseAddr("127.0.0.1"), uint16(sink.LocalAddr().(*net.UDPAddr).Port)
			e.addInner(tb, pkt, &o)
			if len(tb.msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(tb.msgs))
			}
			want := msgBytes(tb, 0)
			e.resendArena(tb, 0)
			var got []byte
			buf := make([]byte, 2048)
			sink.SetReadDeadline(time.Now().Add(2 * time.Second))
			for i := range 4 {
				n, err := sink.Read(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				if wantN := min(tb.msgs[0].segSize, len(want)-len(got)); n != wantN {
					t.Errorf("datagram %d: %d bytes, want %d", i, n, wantN)
				}
				got = append(got, buf[:n]...)
			}
			if string(got) != string(want) {
				t.Error("the datagrams differ from the train")
			}
		})
	}
}

// TestNoAllocsSegment: segmenting a GSO packet into a train whose payload
// points into the packet's views allocates nothing.
func TestNoAllocsSegment(t *testing.T) {
	e := &Endpoint{cfg: config{Config: Config{InnerOffset: 22, Batch: 64}}}
	s := &hostSocket{e: e}
	s.gso.Store(true)
	tb := newTxBatch(64)
	tb.sock = s
	pkt, _ := gsoPacket(60000, header.TCPFlagAck)
	pkt = splitViews(pkt, 4096)
	defer pkt.DecRef()
	var o outgoing
	if parseOutgoing(pkt, &o) != parseOK {
		t.Fatal("outer packet does not parse")
	}
	allocs := testing.AllocsPerRun(50, func() {
		e.addInner(tb, pkt, &o)
		tb.hs, tb.msgs, tb.pkts, tb.iovs, tb.arena = tb.hs[:0], tb.msgs[:0], tb.pkts[:0], tb.iovs[:0], tb.arena[:0]
	})
	if allocs != 0 {
		t.Errorf("segmenting: %v allocations, want 0", allocs)
	}
}
