//go:build linux

package hostudp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// vxlanInner is hostudp's InnerOffset for VXLAN: its header and the inner
// Ethernet header.
const vxlanInner = 8 + 14

// Addresses of the coalescing tests: the outer datagrams' and the inner
// packets'.
var (
	coSrc4 = netip.MustParseAddrPort("192.0.2.2:40000")
	coDst4 = netip.MustParseAddrPort("192.0.2.1:4789")
	coSrc6 = netip.MustParseAddrPort("[2001:db8::2]:40000")
	coDst6 = netip.MustParseAddrPort("[2001:db8::1]:4789")
)

// seg describes a crafted VXLAN datagram carrying an inner TCP segment.
type seg struct {
	v6           bool
	vni          uint32
	ipOptions    bool // an IPv4 NOP option (IHL 6)
	mf           bool
	df           bool
	tos, ttl     uint8
	id           uint16
	innerSrc     byte // last byte of the inner source address
	sport, dport uint16
	seq, ack     uint32
	win          uint16
	flags        uint8
	tsval        uint32
	payload      []byte
	badTCPSum    bool
	partialSum   bool // the TCP checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL)
	badIPSum     bool
	innerProto   uint8 // 0 = TCP
	trailing     int   // bytes after the inner IP packet (Ethernet padding)
	flowLabel    uint32
	noTimestamps bool
}

// base returns a segment of the flow the tests merge, carrying n payload
// bytes starting at stream offset off.
func base(v6 bool, off, n int) seg {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte((off+i)*7 + 3)
	}
	return seg{
		v6: v6, vni: 42, df: true, ttl: 64, id: 100, innerSrc: 2,
		sport: 5001, dport: 43210, seq: 1_000_000 + uint32(off), ack: 777, win: 512,
		flags: uint8(header.TCPFlagAck), tsval: 123456, payload: p,
	}
}

// inetSum is the Internet checksum's ones' complement sum of b added to
// sum, written apart from gVisor's so that the tests check one against
// the other.
func inetSum(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum
}

// l4SumOK reports whether the TCP/UDP checksum of the inner IP packet ip
// (header length hl) verifies.
func l4SumOK(ip []byte, v6 bool, hl int, proto uint8) bool {
	l4 := ip[hl:]
	var sum uint32
	if v6 {
		sum = inetSum(ip[8:40], 0)
	} else {
		sum = inetSum(ip[12:20], 0)
	}
	sum = inetSum([]byte{0, proto, byte(len(l4) >> 8), byte(len(l4))}, sum)
	return inetSum(l4, sum) == 0xffff
}

// pseudoSum is the pseudo-header sum of an inner packet ip carrying l4Len
// bytes of protocol proto: what a CHECKSUM_PARTIAL packet holds in its
// checksum field.
func pseudoSum(ip []byte, v6 bool, proto uint8, l4Len int) uint32 {
	var sum uint32
	if v6 {
		sum = inetSum(ip[8:40], 0)
	} else {
		sum = inetSum(ip[12:20], 0)
	}
	return inetSum([]byte{0, proto, byte(l4Len >> 8), byte(l4Len)}, sum)
}

// refDropped reports whether the endpoint must drop the VXLAN datagram d
// for an inner checksum, by the tests' own reading of the rules.
func refDropped(d []byte) bool { return refVerdict(d) == "drop" }

// refVerdict is what the endpoint must do with the inner checksums of the
// VXLAN datagram d, by the tests' own reading of the rules: "drop" an IPv4
// header or a TCP/UDP checksum that fails (unless it is partial),
// "complete" a partial one (the field holds the pseudo-header sum), ""
// for the rest (valid, or not checked: not IPv4/IPv6 by the Ethertype, a
// fragment, no UDP checksum, malformed lengths).
func refVerdict(d []byte) string {
	if len(d) < vxlanInner+20 {
		return ""
	}
	ip := d[vxlanInner:]
	ethertype := binary.BigEndian.Uint16(d[vxlanInner-2:])
	var hl, end int
	v6 := ethertype == 0x86dd
	switch {
	case ethertype == 0x0800 && ip[0]>>4 == 4:
		hl, end = int(ip[0]&0xf)*4, int(binary.BigEndian.Uint16(ip[2:]))
		if hl < 20 || end < hl || end > len(ip) {
			return ""
		}
		if inetSum(ip[:hl], 0) != 0xffff {
			return "drop"
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return ""
		}
	case v6 && ip[0]>>4 == 6:
		if len(ip) < 40 {
			return ""
		}
		hl, end = 40, 40+int(binary.BigEndian.Uint16(ip[4:]))
		if end > len(ip) {
			return ""
		}
	default:
		return ""
	}
	proto := ip[9]
	if v6 {
		proto = ip[6]
	}
	l4 := ip[hl:end]
	var field uint16
	switch proto {
	case 6:
		if len(l4) < 20 || int(l4[12]>>4)*4 < 20 || int(l4[12]>>4)*4 > len(l4) {
			return ""
		}
		field = binary.BigEndian.Uint16(l4[16:])
	case 17:
		if len(l4) < 8 {
			return ""
		}
		n := int(binary.BigEndian.Uint16(l4[4:]))
		if n < 8 || n > len(l4) {
			return ""
		}
		l4 = l4[:n]
		field = binary.BigEndian.Uint16(l4[6:])
		if field == 0 {
			return ""
		}
	default:
		return ""
	}
	pseudo := pseudoSum(ip, v6, proto, len(l4))
	switch {
	case inetSum(l4, pseudo) == 0xffff:
		return ""
	case uint32(field) == pseudo:
		return "complete"
	}
	return "drop"
}

// setL4Sum writes the TCP checksum of ip.
func setL4Sum(ip []byte, v6 bool, hl int) {
	l4 := ip[hl:]
	l4[16], l4[17] = 0, 0
	var sum uint32
	if v6 {
		sum = inetSum(ip[8:40], 0)
	} else {
		sum = inetSum(ip[12:20], 0)
	}
	sum = inetSum([]byte{0, 6, byte(len(l4) >> 8), byte(len(l4))}, sum)
	binary.BigEndian.PutUint16(l4[16:], ^uint16(inetSum(l4, sum)))
}

// bytes crafts s's UDP payload: VXLAN header, inner Ethernet, IP, TCP
// with the timestamp option, payload; checksums correct unless asked.
func (s seg) bytes() []byte {
	b := []byte{0x08, 0, 0, 0, byte(s.vni >> 16), byte(s.vni >> 8), byte(s.vni), 0}
	b = append(b, 0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2) // dst, src MAC
	if s.v6 {
		b = append(b, 0x86, 0xdd)
	} else {
		b = append(b, 0x08, 0x00)
	}
	ipOff := len(b)
	tcpLen := 20 + 12
	if s.noTimestamps {
		tcpLen = 20
	}
	proto := s.innerProto
	if proto == 0 {
		proto = 6
	}
	var hl int
	if s.v6 {
		hl = 40
		ip := make([]byte, 40)
		binary.BigEndian.PutUint32(ip, 6<<28|uint32(s.tos)<<20|s.flowLabel&0xfffff)
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen+len(s.payload)))
		ip[6], ip[7] = proto, s.ttl
		ip[8], ip[23] = 0x20, s.innerSrc
		ip[24], ip[39] = 0x20, 1
		b = append(b, ip...)
	} else {
		hl = 20
		if s.ipOptions {
			hl = 24
		}
		ip := make([]byte, hl)
		ip[0], ip[1] = 0x40|byte(hl/4), s.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+tcpLen+len(s.payload)))
		binary.BigEndian.PutUint16(ip[4:], s.id)
		if s.df {
			ip[6] |= 0x40
		}
		if s.mf {
			ip[6] |= 0x20
		}
		ip[8], ip[9] = s.ttl, proto
		copy(ip[12:], []byte{10, 0, 0, s.innerSrc, 10, 0, 0, 1})
		if s.ipOptions {
			ip[20] = 1 // NOP
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(inetSum(ip, 0)))
		if s.badIPSum {
			ip[10] ^= 0xff
		}
		b = append(b, ip...)
	}
	tcp := make([]byte, tcpLen)
	binary.BigEndian.PutUint16(tcp, s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], s.ack)
	tcp[12], tcp[13] = byte(tcpLen/4)<<4, s.flags
	binary.BigEndian.PutUint16(tcp[14:], s.win)
	if !s.noTimestamps {
		copy(tcp[20:], []byte{1, 1, 8, 10})
		binary.BigEndian.PutUint32(tcp[24:], s.tsval)
		binary.BigEndian.PutUint32(tcp[28:], 99)
	}
	b = append(b, tcp...)
	b = append(b, s.payload...)
	if proto == 6 {
		setL4Sum(b[ipOff:], s.v6, hl)
	}
	if s.badTCPSum {
		b[ipOff+hl+16] ^= 0x5a
	}
	if s.partialSum {
		binary.BigEndian.PutUint16(b[ipOff+hl+16:], uint16(pseudoSum(b[ipOff:], s.v6, 6, tcpLen+len(s.payload))))
	}
	return append(b, make([]byte, s.trailing)...)
}

// collector gathers what a coalescer delivers.
type collector struct {
	pkts [][]byte
	st   counters
}

func (col *collector) deliver(pkt *stack.PacketBuffer, _ tcpip.NetworkProtocolNumber) {
	col.pkts = append(col.pkts, bytesOf(pkt))
	pkt.DecRef()
}

func newTestCoalescer(udpChecksum bool) (*coalescer, *collector) {
	col := &collector{}
	return newCoalescer(vxlanInner, true, udpChecksum, col.deliver, &col.st), col
}

// udpPayload checks the outer IP and UDP headers of a delivered packet
// (lengths, IPv4 header checksum, UDP checksum when not zero) and returns
// its UDP payload.
func udpPayload(t testing.TB, b []byte, v6 bool) []byte {
	t.Helper()
	hl := 20
	var pseudo uint32
	if v6 {
		hl = 40
		if int(binary.BigEndian.Uint16(b[4:]))+40 != len(b) {
			t.Fatalf("outer IPv6 payload length %d, packet %d", binary.BigEndian.Uint16(b[4:]), len(b))
		}
		pseudo = inetSum(b[8:40], 0)
	} else {
		if int(binary.BigEndian.Uint16(b[2:])) != len(b) || inetSum(b[:20], 0) != 0xffff {
			t.Fatalf("outer IPv4 header %x for a packet of %d", b[:20], len(b))
		}
		pseudo = inetSum(b[12:20], 0)
	}
	u := b[hl:]
	if int(binary.BigEndian.Uint16(u[4:])) != len(u) {
		t.Fatalf("outer UDP length %d, datagram %d", binary.BigEndian.Uint16(u[4:]), len(u))
	}
	if binary.BigEndian.Uint16(u[6:]) != 0 && !(v6 && binary.BigEndian.Uint16(u[6:]) == 0xffff) {
		if inetSum(u, inetSum([]byte{0, 17, byte(len(u) >> 8), byte(len(u))}, pseudo)) != 0xffff {
			t.Fatalf("outer UDP checksum %#04x invalid", binary.BigEndian.Uint16(u[6:]))
		}
	}
	return u[8:]
}

// TestCoalesceGolden merges three datagrams of one inner TCP flow (the
// last shorter and with PSH) and checks the merged datagram byte for byte
// against the one crafted whole, checksums verified independently.
func TestCoalesceGolden(t *testing.T) {
	for _, tc := range []struct {
		name     string
		v6, csum bool
		sizes    []int
	}{
		{"ipv4", false, true, []int{1398, 1398, 700}},
		{"ipv4-odd-mss", false, true, []int{1397, 1397, 501}},
		{"ipv4-trust-host", false, false, []int{1398, 1398, 1398}},
		{"ipv6", true, true, []int{1378, 1378, 99}},
		{"ipv6-odd-mss", true, false, []int{1377, 1377, 1377}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, col := newTestCoalescer(tc.csum)
			src, dst := coSrc4, coDst4
			if tc.v6 {
				src, dst = coSrc6, coDst6
			}
			off := 0
			var all []byte
			for i, n := range tc.sizes {
				s := base(tc.v6, off, n)
				s.id = 100 + uint16(i)
				if i == len(tc.sizes)-1 {
					s.flags |= uint8(header.TCPFlagPsh)
				}
				all = append(all, s.payload...)
				c.add(src, dst, s.bytes())
				off += n
			}
			c.flush()
			if len(col.pkts) != 1 {
				t.Fatalf("%d packets delivered, want 1", len(col.pkts))
			}
			want := base(tc.v6, 0, 0)
			want.id, want.payload = 100, all
			want.flags |= uint8(header.TCPFlagPsh)
			got := udpPayload(t, col.pkts[0], tc.v6)
			if diff := cmp.Diff(want.bytes(), got); diff != "" {
				t.Errorf("merged datagram (-want +got):\n%s", diff)
			}
			hl := 20
			if tc.v6 {
				hl = 40
			}
			if !l4SumOK(got[vxlanInner:], tc.v6, hl, 6) {
				t.Error("merged inner TCP checksum invalid")
			}
			if !tc.v6 && inetSum(got[vxlanInner:vxlanInner+20], 0) != 0xffff {
				t.Error("merged inner IPv4 header checksum invalid")
			}
			if m, n := col.st.rxMerged.Load(), col.st.rxCoalesced.Load(); m != 1 || n != uint64(len(tc.sizes)) {
				t.Errorf("counted %d merged from %d, want 1 from %d", m, n, len(tc.sizes))
			}
		})
	}
}

// TestCoalesceRefuses: two datagrams that would merge, but for one
// difference, are delivered as they came, in order.
func TestCoalesceRefuses(t *testing.T) {
	for _, tc := range []struct {
		name        string
		v6          bool
		first, next func(*seg)
		nextSrc     netip.AddrPort // zero: the first's
		size        int            // payload size of both (0: 1000)
	}{
		{name: "outer-source-port", nextSrc: netip.MustParseAddrPort("192.0.2.2:40001")},
		{name: "outer-source-address", nextSrc: netip.MustParseAddrPort("192.0.2.3:40000")},
		{name: "vni", next: func(s *seg) { s.vni = 43 }},
		{name: "ip-options", first: func(s *seg) { s.ipOptions = true }, next: func(s *seg) { s.ipOptions = true }},
		{name: "fragment", first: func(s *seg) { s.mf = true }, next: func(s *seg) { s.mf = true }},
		{name: "inner-address", next: func(s *seg) { s.innerSrc = 3 }},
		{name: "tos", next: func(s *seg) { s.tos = 4 }},
		{name: "ttl", next: func(s *seg) { s.ttl = 63 }},
		{name: "df", next: func(s *seg) { s.df = false }},
		{name: "id-gap", next: func(s *seg) { s.id += 2 }},
		{name: "id-backwards", next: func(s *seg) { s.id -= 2 }},
		{name: "inner-sctp", first: func(s *seg) { s.innerProto = 132 }, next: func(s *seg) { s.innerProto = 132 }},
		{name: "ethernet-padding", first: func(s *seg) { s.trailing = 2 }, next: func(s *seg) { s.trailing = 2 }},
		{name: "source-port", next: func(s *seg) { s.sport++ }},
		{name: "destination-port", next: func(s *seg) { s.dport++ }},
		{name: "ack", next: func(s *seg) { s.ack++ }},
		{name: "window", next: func(s *seg) { s.win++ }},
		{name: "timestamp", next: func(s *seg) { s.tsval++ }},
		{name: "options-length", next: func(s *seg) { s.noTimestamps = true }},
		{name: "syn", next: func(s *seg) { s.flags |= uint8(header.TCPFlagSyn) }},
		{name: "fin", next: func(s *seg) { s.flags |= uint8(header.TCPFlagFin) }},
		{name: "rst", next: func(s *seg) { s.flags |= uint8(header.TCPFlagRst) }},
		{name: "urg", next: func(s *seg) { s.flags |= uint8(header.TCPFlagUrg) }},
		{name: "cwr", next: func(s *seg) { s.flags |= uint8(header.TCPFlagCwr) }},
		{name: "ece", next: func(s *seg) { s.flags |= uint8(header.TCPFlagEce) }},
		{name: "no-ack", next: func(s *seg) { s.flags = 0 }},
		{name: "psh-on-first", first: func(s *seg) { s.flags |= uint8(header.TCPFlagPsh) }},
		{name: "seq-gap", next: func(s *seg) { s.seq++ }},
		{name: "seq-overlap", next: func(s *seg) { s.seq-- }},
		{name: "first-shorter", first: func(s *seg) { s.payload = s.payload[:999] }, next: func(s *seg) { s.seq-- }},
		{name: "next-longer", next: func(s *seg) { s.payload = append(s.payload, 1) }},
		{name: "no-payload", first: func(s *seg) { s.payload = nil }, next: func(s *seg) { s.payload = nil; s.seq -= 1000 }},
		{name: "too-big", size: 40000},
		{name: "v6-next-header", v6: true, first: func(s *seg) { s.innerProto = 132 }, next: func(s *seg) { s.innerProto = 132 }},
		{name: "v6-hop-limit", v6: true, next: func(s *seg) { s.ttl = 1 }},
		{name: "v6-traffic-class", v6: true, next: func(s *seg) { s.tos = 1 }},
		{name: "v6-flow-label", v6: true, next: func(s *seg) { s.flowLabel = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.size
			if size == 0 {
				size = 1000
			}
			a, b := base(tc.v6, 0, size), base(tc.v6, size, size)
			b.id = a.id + 1
			if tc.first != nil {
				tc.first(&a)
			}
			if tc.next != nil {
				tc.next(&b)
			}
			src, dst := coSrc4, coDst4
			if tc.v6 {
				src, dst = coSrc6, coDst6
			}
			nextSrc := src
			if tc.nextSrc.IsValid() {
				nextSrc = tc.nextSrc
			}
			c, col := newTestCoalescer(true)
			in := [][]byte{a.bytes(), b.bytes()}
			c.add(src, dst, in[0])
			c.add(nextSrc, dst, in[1])
			c.flush()
			var got [][]byte
			for _, p := range col.pkts {
				got = append(got, udpPayload(t, p, tc.v6))
			}
			if diff := cmp.Diff(in, got); diff != "" {
				t.Errorf("delivered (-want +got):\n%s", diff)
			}
			if m := col.st.rxMerged.Load(); m != 0 {
				t.Errorf("%d merged", m)
			}
		})
	}
}

// TestCoalesceFixedID: a run whose IPv4 IDs are all equal (a TSO burst
// with fixed IDs) merges; a change of mode within the run ends it.
func TestCoalesceFixedID(t *testing.T) {
	c, col := newTestCoalescer(true)
	for i := range 4 {
		s := base(false, i*1000, 1000)
		s.id = 100
		if i == 3 {
			s.id = 101 // consecutive after fixed: a new run
		}
		c.add(coSrc4, coDst4, s.bytes())
	}
	c.flush()
	if len(col.pkts) != 2 || col.st.rxMerged.Load() != 1 || col.st.rxCoalesced.Load() != 3 {
		t.Errorf("%d packets, %d merged from %d; want 2, 1 from 3", len(col.pkts), col.st.rxMerged.Load(), col.st.rxCoalesced.Load())
	}
}

// TestCoalesceOrder: a datagram that cannot merge ends the run before it,
// so that the stack sees everything in the order it came.
func TestCoalesceOrder(t *testing.T) {
	c, col := newTestCoalescer(true)
	a, b, d := base(false, 0, 1000), base(false, 1000, 1000), base(false, 2000, 1000)
	b.id, d.id = a.id+1, a.id+2
	other := base(false, 0, 100)
	other.sport = 1
	c.add(coSrc4, coDst4, a.bytes())
	c.add(coSrc4, coDst4, b.bytes())
	c.add(coSrc4, coDst4, []byte("not vxlan"))
	c.add(coSrc4, coDst4, other.bytes())
	c.add(coSrc4, coDst4, d.bytes())
	c.flush()
	var sizes []int
	for _, p := range col.pkts {
		sizes = append(sizes, len(udpPayload(t, p, false)))
	}
	hdr := len(a.bytes()) - 1000
	if diff := cmp.Diff([]int{hdr + 2000, 9, hdr + 100, hdr + 1000}, sizes); diff != "" {
		t.Errorf("delivered sizes (-want +got):\n%s", diff)
	}
}

// TestCoalesceMaxRun: a run stops at maxRun datagrams.
func TestCoalesceMaxRun(t *testing.T) {
	c, col := newTestCoalescer(false)
	for i := range maxRun + 1 {
		s := base(false, i*100, 100)
		s.id += uint16(i)
		c.add(coSrc4, coDst4, s.bytes())
	}
	c.flush()
	if len(col.pkts) != 2 || col.st.rxCoalesced.Load() != maxRun {
		t.Errorf("%d packets, %d coalesced; want 2, %d", len(col.pkts), col.st.rxCoalesced.Load(), maxRun)
	}
}

// FuzzCoalesce feeds batches of datagrams to a coalescer: no panic,
// every datagram delivered once (alone as it came, or in a merged packet
// whose payload is the run's payloads in order), and every merged packet
// with valid lengths and checksums, outer and inner.
//
// The input is a flags byte (bit 0: IPv6 outer addresses, bit 1: outer
// UDP checksums, bit 2: fix the inner checksums of every datagram, so
// that mutated headers still verify) followed by datagrams, each a 2-byte
// big-endian length and its bytes.
func FuzzCoalesce(f *testing.F) {
	batch := func(flags byte, segs ...seg) []byte {
		out := []byte{flags}
		for _, s := range segs {
			b := s.bytes()
			out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
			out = append(out, b...)
		}
		return out
	}
	run := func(v6 bool, n, size int, last uint8) []seg {
		var out []seg
		for i := range n {
			s := base(v6, i*size, size)
			s.id += uint16(i)
			if i == n-1 {
				s.flags |= last
			}
			out = append(out, s)
		}
		return out
	}
	// Three IPv4 segments that merge, the last with PSH.
	f.Add(batch(2, run(false, 3, 1398, uint8(header.TCPFlagPsh))...))
	// The same over IPv6, odd segment size, fix-checksums on.
	f.Add(batch(7, run(true, 3, 1377, 0)...))
	// A run broken by a datagram of another flow.
	mixed := run(false, 4, 500, 0)
	mixed[2].sport = 9
	f.Add(batch(6, mixed...))
	// A bad checksum inside a run.
	bad := run(false, 3, 800, 0)
	bad[1].badTCPSum = true
	f.Add(batch(2, bad...))
	// A TSO super-packet from a kernel peer on this host: one datagram,
	// the TCP checksum left partial.
	tso := base(false, 0, 20000)
	tso.partialSum = true
	f.Add(batch(2, tso))
	// Not VXLAN at all.
	f.Add([]byte{0, 0, 3, 'a', 'b', 'c'})

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		flags := data[0]
		v6 := flags&1 != 0
		var in [][]byte
		for b := data[1:]; len(b) >= 2; {
			n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
			d := append([]byte(nil), b[2:2+n]...)
			b = b[2+n:]
			if flags&4 != 0 {
				fixInnerSums(d)
			}
			in = append(in, d)
		}
		src, dst := coSrc4, coDst4
		if v6 {
			src, dst = coSrc6, coDst6
		}
		orig := make([][]byte, len(in))
		for i, d := range in {
			orig[i] = append([]byte(nil), d...)
		}
		c, col := newTestCoalescer(flags&2 != 0)
		for _, d := range in {
			c.add(src, dst, d)
		}
		c.flush()

		// A datagram is dropped (its inner checksums fail), delivered as
		// it came (but for a partial checksum completed in place), or
		// merged with the next ones.
		i, merged, coalesced, dropped, completed := 0, uint64(0), uint64(0), uint64(0), uint64(0)
		for j := 0; j < len(col.pkts); {
			if i >= len(in) {
				t.Fatalf("more delivered than received")
			}
			if refDropped(orig[i]) {
				dropped++
				i++
				continue
			}
			if refVerdict(orig[i]) == "complete" {
				// Completed in place: only the checksum changed, and now
				// it verifies.
				completed++
				if bytes.Equal(in[i], orig[i]) || refVerdict(in[i]) != "" || len(in[i]) != len(orig[i]) {
					t.Fatalf("datagram %d not completed: %x, was %x", i, in[i], orig[i])
				}
			} else if !bytes.Equal(in[i], orig[i]) {
				t.Fatalf("datagram %d changed: %x, was %x", i, in[i], orig[i])
			}
			got := udpPayload(t, col.pkts[j], v6)
			j++
			if bytes.Equal(got, in[i]) {
				i++
				continue
			}
			// A merged packet: the run's first datagram's headers, then
			// the payloads of as many datagrams as it holds.
			var s rxSeg
			if _, ok := inspect(in[i], vxlanInner, true, &s); !ok {
				t.Fatalf("datagram %d changed but is no candidate", i)
			}
			want := append([]byte(nil), in[i][s.dataOff:]...)
			k := 1
			for len(want) < len(got)-s.dataOff && i+k < len(in) {
				var n rxSeg
				if _, ok := inspect(in[i+k], vxlanInner, true, &n); !ok {
					t.Fatalf("datagram %d merged but is no candidate", i+k)
				}
				want = append(want, n.payload()...)
				k++
			}
			if k < 2 || !bytes.Equal(want, got[s.dataOff:]) {
				t.Fatalf("merged payload of %d datagrams from %d differs", k, i)
			}
			ip := got[vxlanInner:]
			hl := 40
			if s.v6 {
				if int(binary.BigEndian.Uint16(ip[4:]))+40 != len(ip) {
					t.Fatalf("merged inner IPv6 payload length wrong")
				}
			} else {
				hl = 20
				if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) || inetSum(ip[:20], 0) != 0xffff {
					t.Fatalf("merged inner IPv4 header wrong: %x", ip[:20])
				}
			}
			if !l4SumOK(ip, s.v6, hl, 6) {
				t.Fatalf("merged inner TCP checksum invalid")
			}
			merged++
			coalesced += uint64(k)
			i += k
		}
		for ; i < len(in); i++ {
			if !refDropped(orig[i]) {
				t.Fatalf("datagram %d of %d neither delivered nor dropped", i, len(in))
			}
			dropped++
		}
		if merged != col.st.rxMerged.Load() || coalesced != col.st.rxCoalesced.Load() {
			t.Fatalf("counted %d merged from %d, saw %d from %d", col.st.rxMerged.Load(), col.st.rxCoalesced.Load(), merged, coalesced)
		}
		if dropped != col.st.innerChecksum.Load() || completed != col.st.rxCompleted.Load() {
			t.Fatalf("counted %d inner checksum drops and %d completions, saw %d and %d",
				col.st.innerChecksum.Load(), col.st.rxCompleted.Load(), dropped, completed)
		}
	})
}

// fixInnerSums rewrites the inner IPv4 header checksum and the inner TCP
// checksum of a VXLAN datagram d, where its headers allow.
func fixInnerSums(d []byte) {
	if len(d) < vxlanInner+20 {
		return
	}
	ip := d[vxlanInner:]
	switch ip[0] >> 4 {
	case 4:
		hl := int(ip[0]&0xf) * 4
		if hl < 20 || len(ip) < hl+20 || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) || ip[9] != 6 {
			return
		}
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^uint16(inetSum(ip[:hl], 0)))
		setL4Sum(ip, false, hl)
	case 6:
		if len(ip) < 60 || int(binary.BigEndian.Uint16(ip[4:]))+40 != len(ip) || ip[6] != 6 {
			return
		}
		setL4Sum(ip, true, 40)
	}
}

// udpDatagram crafts a VXLAN datagram carrying an inner UDP datagram with
// the checksum mode sum: "ok", "zero" (none), "bad" or "partial".
func udpDatagram(v6 bool, payload []byte, sum string) []byte {
	s := base(v6, 0, 0)
	s.innerProto = 17
	s.noTimestamps = true
	b := s.bytes() // headers for a 20-byte "TCP" header: cut to UDP's 8
	hl := 20
	if v6 {
		hl = 40
	}
	b = append(b[:vxlanInner+hl], make([]byte, 8)...)
	b = append(b, payload...)
	ip := b[vxlanInner:]
	l4 := ip[hl:]
	binary.BigEndian.PutUint16(l4, 5353)
	binary.BigEndian.PutUint16(l4[2:], 53)
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	if v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^uint16(inetSum(ip[:20], 0)))
	}
	pseudo := pseudoSum(ip, v6, 17, len(l4))
	switch sum {
	case "ok", "bad":
		c := ^uint16(inetSum(l4, pseudo))
		if sum == "bad" {
			c ^= 0x0101
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case "partial":
		binary.BigEndian.PutUint16(l4[6:], uint16(pseudo))
	}
	return b
}

// TestInnerChecksums: on the inner-offload path the endpoint verifies
// inner checksums for the inner stack, which trusts them: a failing one
// is dropped and counted, a partial one (the pseudo-header sum that a
// sender on this host left for an offload) is completed and counted, and
// what cannot be checked passes as it came.
func TestInnerChecksums(t *testing.T) {
	tcp := func(v6 bool, f func(*seg)) []byte {
		s := base(v6, 0, 1000)
		s.flags |= uint8(header.TCPFlagPsh)
		if f != nil {
			f(&s)
		}
		return s.bytes()
	}
	// Not IP by the Ethertype, though the bytes behind it would pass for
	// IPv4 with a bad checksum: a VLAN tag (TCI 0x4500, priority 2) and LLDP.
	vlan := tcp(false, func(s *seg) { s.badIPSum = true })
	vlan[vxlanInner-2], vlan[vxlanInner-1] = 0x81, 0x00
	lldp := tcp(false, func(s *seg) { s.badTCPSum = true })
	lldp[vxlanInner-2], lldp[vxlanInner-1] = 0x88, 0xcc
	// A UDP length short of the IP payload: the datagram ends there, and
	// its checksum covers only that much.
	short := func(sum string) []byte {
		b := udpDatagram(false, []byte("query"), sum)
		b = append(b, 0xde, 0xad, 0xbe, 0xef) // inside the IP packet, after the UDP datagram
		ip := b[vxlanInner:]
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^uint16(inetSum(ip[:20], 0)))
		return b
	}
	for _, tc := range []struct {
		name               string
		v6                 bool
		data               []byte
		dropped, completed uint64
	}{
		{name: "tcp-ok", data: tcp(false, nil)},
		{name: "tcp-ok-v6", v6: true, data: tcp(true, nil)},
		{name: "tcp-bad", data: tcp(false, func(s *seg) { s.badTCPSum = true }), dropped: 1},
		{name: "tcp-bad-v6", v6: true, data: tcp(true, func(s *seg) { s.badTCPSum = true }), dropped: 1},
		{name: "ip-header-bad", data: tcp(false, func(s *seg) { s.badIPSum = true }), dropped: 1},
		{name: "tcp-partial", data: tcp(false, func(s *seg) { s.partialSum = true }), completed: 1},
		{name: "tcp-partial-v6", v6: true, data: tcp(true, func(s *seg) { s.partialSum = true }), completed: 1},
		{name: "tcp-partial-64k", data: func() []byte { s := base(false, 0, 62000); s.partialSum = true; return s.bytes() }(), completed: 1},
		{name: "tcp-partial-padded", data: tcp(false, func(s *seg) { s.partialSum = true; s.trailing = 6 }), completed: 1},
		{name: "udp-ok", data: udpDatagram(false, []byte("query"), "ok")},
		{name: "udp-none", data: udpDatagram(false, []byte("query"), "zero")},
		// Over IPv6 the stack's policy decides (ChecksumPolicy.ZeroRx6).
		{name: "udp-none-v6", v6: true, data: udpDatagram(true, []byte("query"), "zero")},
		{name: "udp-short-length", data: short("ok")},
		{name: "udp-short-length-bad", data: short("bad"), dropped: 1},
		{name: "udp-short-length-partial", data: short("partial"), completed: 1},
		{name: "udp-bad", data: udpDatagram(false, []byte("query"), "bad"), dropped: 1},
		{name: "udp-bad-v6", v6: true, data: udpDatagram(true, []byte("query!"), "bad"), dropped: 1},
		{name: "udp-partial", data: udpDatagram(false, []byte("odd"), "partial"), completed: 1},
		{name: "udp-partial-v6", v6: true, data: udpDatagram(true, []byte("query"), "partial"), completed: 1},
		// Unchecked: a fragment (its L4 checksum covers the whole
		// datagram) and a frame that is not IP.
		{name: "fragment", data: tcp(false, func(s *seg) { s.mf = true; s.badTCPSum = true })},
		{name: "vlan", data: vlan},
		{name: "lldp", data: lldp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := coSrc4, coDst4
			if tc.v6 {
				src, dst = coSrc6, coDst6
			}
			c, col := newTestCoalescer(true)
			in := append([]byte(nil), tc.data...)
			c.add(src, dst, in)
			c.flush()
			if got := col.st.innerChecksum.Load(); got != tc.dropped {
				t.Errorf("inner checksum drops %d, want %d", got, tc.dropped)
			}
			if got := col.st.rxCompleted.Load(); got != tc.completed {
				t.Errorf("completed %d, want %d", got, tc.completed)
			}
			if tc.dropped > 0 {
				if len(col.pkts) != 0 {
					t.Fatalf("%d packets delivered, want none", len(col.pkts))
				}
				return
			}
			if len(col.pkts) != 1 {
				t.Fatalf("%d packets delivered, want 1", len(col.pkts))
			}
			got := udpPayload(t, col.pkts[0], tc.v6)
			if tc.completed == 0 {
				if !bytes.Equal(got, tc.data) {
					t.Fatalf("delivered %x, want it as it came", got)
				}
				return
			}
			// Only the checksum field changed, and it verifies now.
			if len(got) != len(tc.data) || refDropped(got) {
				t.Fatalf("completed datagram wrong: %x", got)
			}
			hl := 20
			if tc.v6 {
				hl = 40
			}
			ip := got[vxlanInner:]
			end := hl + int(binary.BigEndian.Uint16(ip[4:]))
			if !tc.v6 {
				end = int(binary.BigEndian.Uint16(ip[2:]))
			}
			proto := ip[9]
			if tc.v6 {
				proto = ip[6]
			}
			if proto == 17 {
				end = hl + int(binary.BigEndian.Uint16(ip[hl+4:])) // the UDP length bounds the datagram
			}
			if !l4SumOK(ip[:end], tc.v6, hl, proto) {
				t.Fatalf("completed checksum does not verify")
			}
			diff := 0
			for i := range got {
				if got[i] != tc.data[i] {
					diff++
				}
			}
			if diff == 0 || diff > 2 {
				t.Fatalf("%d bytes changed, want the checksum field's", diff)
			}
		})
	}
}

// TestCoalescePartialRun: segments whose checksums are partial (a kernel
// peer's software-segmented TSO burst) are completed and still merge.
func TestCoalescePartialRun(t *testing.T) {
	c, col := newTestCoalescer(true)
	for i := range 3 {
		s := base(false, i*1000, 1000)
		s.id += uint16(i)
		s.partialSum = true
		c.add(coSrc4, coDst4, s.bytes())
	}
	c.flush()
	if len(col.pkts) != 1 || col.st.rxMerged.Load() != 1 || col.st.rxCompleted.Load() != 3 {
		t.Fatalf("%d packets, %d merged, %d completed; want 1, 1, 3", len(col.pkts), col.st.rxMerged.Load(), col.st.rxCompleted.Load())
	}
	ip := udpPayload(t, col.pkts[0], false)[vxlanInner:]
	if !l4SumOK(ip, false, 20, 6) || len(ip) != 20+32+3000 {
		t.Fatalf("merged packet of %d bytes, checksum valid %v", len(ip), l4SumOK(ip, false, 20, 6))
	}
}

// TestInspectUDPSum: the sum of a whole datagram that inspect derives
// from the sums it took equals a full pass over it, at odd and even inner
// offsets, with and without bytes after the inner packet, for a valid and
// a completed checksum.
func TestInspectUDPSum(t *testing.T) {
	for _, off := range []int{21, 22, 23} {
		for _, trailing := range []int{0, 1, 3} {
			for _, partial := range []bool{false, true} {
				s := base(false, 0, 999)
				s.partialSum = partial
				b := s.bytes()[vxlanInner:] // the inner IP packet
				data := append(make([]byte, off), b...)
				for i := range off {
					data[i] = byte(i*37 + 11)
				}
				data = append(data, []byte{0xff, 0x01, 0x7f}[:trailing]...)
				var r rxSeg
				v, _ := inspect(data, off, false, &r)
				want := l4Valid
				if partial {
					want = l4Completed
				}
				if v != want || !r.haveSum {
					t.Fatalf("off %d trailing %d partial %v: verdict %d (have sum %v), want %d", off, trailing, partial, v, r.haveSum, want)
				}
				if full := uint16(inetSum(data, 0)); r.udpSum != full {
					t.Errorf("off %d trailing %d partial %v: sum %#04x, a full pass %#04x", off, trailing, partial, r.udpSum, full)
				}
			}
		}
	}
}
