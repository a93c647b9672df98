//go:build linux

package hostudp

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The inner-offload path (Config.InnerOffset): the tunnel device runs with
// checksum and segmentation offload, so the endpoint receives inner TCP
// segments of up to 64 KiB in one outer datagram, with inner checksums
// unfinished. It does what the kernel's skb_udp_tunnel_segment and a NIC's
// checksum offload do: inner TCP/UDP checksums are finished, and a GSO
// super-packet is cut into MSS-sized inner segments, each behind a copy of
// the tunnel, link, IP and TCP headers, that leave as one UDP GSO train.
// The headers are written into the batch's arena, and the segments' data
// stays where it is: the train's iovecs alternate between a segment's
// headers and its data in the packet's own buffer, so that the kernel's
// copy into its socket buffer is the only one. A packet that is not
// segmented (or whose buffer has too many views) is copied into the arena
// whole and finished there.

// arenaSize bounds the bytes copied per flush.
const arenaSize = 4 << 20

// maxTrain bounds the UDP payload of one GSO train.
const maxTrain = 65000

// innerHeaders are the inner headers found in an outer datagram's payload.
type innerHeaders struct {
	ok       bool // an unfragmented inner IPv4/IPv6 TCP or UDP packet
	v6       bool
	proto    tcpip.TransportProtocolNumber
	ipOff    int // the inner IP header's offset in the UDP payload
	l4Off    int // the inner TCP/UDP header's offset
	dataOff  int // the inner TCP/UDP payload's offset
	src, dst tcpip.Address
}

// parseInner finds the inner headers in hdr, the start of a UDP payload.
func parseInner(hdr []byte, ipOff int) innerHeaders {
	h := innerHeaders{ipOff: ipOff}
	if len(hdr) < ipOff+header.IPv4MinimumSize {
		return h
	}
	b := hdr[ipOff:]
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		hl := int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize || len(b) < hl || ip.More() || ip.FragmentOffset() != 0 {
			return h
		}
		h.proto, h.l4Off = ip.TransportProtocol(), ipOff+hl
		h.src, h.dst = ip.SourceAddress(), ip.DestinationAddress()
	case 6:
		if len(b) < header.IPv6MinimumSize {
			return h
		}
		ip := header.IPv6(b)
		h.v6, h.proto, h.l4Off = true, ip.TransportProtocol(), ipOff+header.IPv6MinimumSize
		h.src, h.dst = ip.SourceAddress(), ip.DestinationAddress()
	default:
		return h
	}
	switch h.proto {
	case header.TCPProtocolNumber:
		if len(hdr) < h.l4Off+header.TCPMinimumSize {
			return h
		}
		thl := int(hdr[h.l4Off+12]>>4) * 4
		if thl < header.TCPMinimumSize || len(hdr) < h.l4Off+thl {
			return h
		}
		h.dataOff = h.l4Off + thl
	case header.UDPProtocolNumber:
		if len(hdr) < h.l4Off+header.UDPMinimumSize {
			return h
		}
		h.dataOff = h.l4Off + header.UDPMinimumSize
	default:
		return h
	}
	h.ok = true
	return h
}

// copyRange copies pkt's bytes from offset off (from its first header)
// into b and returns how many it copied.
func copyRange(pkt *stack.PacketBuffer, off int, b []byte) int {
	views, voff := pkt.AsViewList()
	off += voff
	n := 0
	for v := views.Front(); v != nil && n < len(b); v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(b[n:], s[off:])
		off = 0
	}
	return n
}

// fixInner finishes the inner packet in p, a copy of a UDP payload whose
// inner headers are h: IP lengths (and the IPv4 header checksum) for the
// packet's size, and the TCP/UDP checksum.
func fixInner(p []byte, h *innerHeaders) {
	finishInner(p[:h.dataOff], h, len(p)-h.dataOff, checksum.Checksum(p[h.dataOff:], 0))
}

// finishInner finishes the inner headers p (the UDP payload up to the
// inner TCP/UDP payload, headers h) of a packet whose inner payload, held
// elsewhere, is payLen bytes with the ones' complement sum paySum: IP
// lengths (and the IPv4 header checksum), and the TCP/UDP checksum.
func finishInner(p []byte, h *innerHeaders, payLen int, paySum uint16) {
	l4Len := len(p) + payLen - h.l4Off
	if h.v6 {
		binary.BigEndian.PutUint16(p[h.ipOff+4:], uint16(l4Len))
	} else {
		ip := header.IPv4(p[h.ipOff:])
		ip.SetTotalLength(uint16(len(p) + payLen - h.ipOff))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	l4 := p[h.l4Off:]
	csumOff := 16 // TCP
	if h.proto == header.UDPProtocolNumber {
		csumOff = 6
		binary.BigEndian.PutUint16(l4[4:], uint16(l4Len))
	}
	l4[csumOff], l4[csumOff+1] = 0, 0
	sum := header.PseudoHeaderChecksum(h.proto, h.src, h.dst, uint16(l4Len))
	// The TCP or UDP header's length is even: the payload's sum combines
	// as it is.
	sum = checksum.Combine(checksum.Checksum(l4, sum), paySum)
	c := ^sum
	if c == 0 && h.proto == header.UDPProtocolNumber {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
}

// appendRange appends iovecs for n bytes of pkt from offset off (from its
// first header), pointing into pkt's own buffer, and returns their ones'
// complement sum. The caller made sure that t.iovs has room.
func (t *txBatch) appendRange(pkt *stack.PacketBuffer, off, n int) uint16 {
	var c checksum.Checksumer
	views, voff := pkt.AsViewList()
	off += voff
	for v := views.Front(); v != nil && n > 0; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:min(len(b), off+n)]
		off = 0
		c.Add(b)
		t.iovs = append(t.iovs, unix.Iovec{Base: &b[0]})
		t.iovs[len(t.iovs)-1].SetLen(len(b))
		n -= len(b)
	}
	return c.Checksum()
}

// viewCount returns how many views pkt's buffer has.
func viewCount(pkt *stack.PacketBuffer) int {
	views, _ := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil; v = v.Next() {
		n++
	}
	return n
}

// maxGatherViews bounds the views of a packet whose segments point into
// it rather than being copied: a train's iovecs are then at most two per
// segment plus this, far below UIO_MAXIOV.
const maxGatherViews = 64

// addInner adds a packet of the inner-offload path to the batch: copied,
// finished and, for a GSO packet, segmented. It flushes the batch as
// needed.
func (e *Endpoint) addInner(t *txBatch, pkt *stack.PacketBuffer, o *outgoing) {
	var hb [256]byte
	hdr := hb[:copyRange(pkt, o.payloadOff, hb[:min(len(hb), o.payloadLen)])]
	h := parseInner(hdr, e.cfg.InnerOffset)
	gso := pkt.GSOOptions
	if !h.ok || h.proto != header.TCPProtocolNumber || gso.Type == stack.GSONone || gso.MSS == 0 ||
		o.payloadLen-h.dataOff <= int(gso.MSS) {
		// One datagram: copied whole, finished if it is TCP or UDP.
		b := t.arenaTake(e, o.payloadLen)
		copyRange(pkt, o.payloadOff, b)
		if h.ok {
			fixInner(b, &h)
		}
		t.addArena(pkt, o, b, len(b), 1)
		return
	}
	mss, prefix := int(gso.MSS), h.dataOff
	data := o.payloadLen - prefix
	segSize := prefix + mss
	group := 1
	if t.sock.gso.Load() {
		group = min(maxGSOSegments, maxTrain/segSize)
	}
	tcp := header.TCP(hdr[h.l4Off:])
	seq, flags := tcp.SequenceNumber(), tcp.Flags()
	var id uint16
	if !h.v6 {
		id = header.IPv4(hdr[h.ipOff:]).ID()
	}
	if views := viewCount(pkt); views <= maxGatherViews {
		// Only the headers are copied: each segment is an iovec for its
		// headers in the arena followed by iovecs for its payload in
		// the packet's own buffer (which the batch holds a reference to
		// until it is sent), and the kernel's copy is the only one.
		for i, off := 0, 0; off < data; {
			n := min(group, (data-off+mss-1)/mss)
			size := min(n*segSize, n*prefix+data-off)
			b := t.take(e, n*prefix, 2*n+views)
			start := len(t.iovs)
			for k := range n {
				chunk := min(mss, data-off)
				s := b[k*prefix : (k+1)*prefix]
				segHeaders(s, hdr, &h, id+uint16(i), seq+uint32(off), flags, i == 0, off+chunk == data)
				t.iovs = append(t.iovs, unix.Iovec{Base: &s[0]})
				t.iovs[len(t.iovs)-1].SetLen(prefix)
				finishInner(s, &h, chunk, t.appendRange(pkt, o.payloadOff+prefix+off, chunk))
				off += chunk
				i++
			}
			t.addMsg(pkt, o, start, size, segSize, n)
		}
		return
	}
	for i, off := 0, 0; off < data; {
		// One train of up to group segments, copied whole.
		n := min(group, (data-off+mss-1)/mss)
		size := min(n*segSize, n*prefix+data-off)
		b := t.arenaTake(e, size)
		pos := 0
		for range n {
			chunk := min(mss, data-off)
			s := b[pos : pos+prefix+chunk]
			segHeaders(s[:prefix], hdr, &h, id+uint16(i), seq+uint32(off), flags, i == 0, off+chunk == data)
			copyRange(pkt, o.payloadOff+prefix+off, s[prefix:])
			fixInner(s, &h)
			pos += len(s)
			off += chunk
			i++
		}
		t.addArena(pkt, o, b, segSize, n)
	}
}

// segHeaders writes into s the headers of one segment of a GSO packet
// whose headers are hdr (h): IPv4 ID, sequence number and flags as
// tcp_gso_segment sets them (CWR on the first segment only, FIN and PSH on
// the last only). The lengths and checksums are left to finishInner.
func segHeaders(s, hdr []byte, h *innerHeaders, id uint16, seq uint32, flags header.TCPFlags, first, last bool) {
	copy(s, hdr[:len(s)])
	if !h.v6 {
		header.IPv4(s[h.ipOff:]).SetID(id)
	}
	st := header.TCP(s[h.l4Off:])
	st.SetSequenceNumber(seq)
	if !last {
		flags &^= header.TCPFlagFin | header.TCPFlagPsh
	}
	if !first {
		flags &^= header.TCPFlagCwr
	}
	st.SetFlags(uint8(flags))
}

// arenaTake returns n bytes of the arena for a message of one iovec,
// flushing the batch first when the arena or the message slots are full.
func (t *txBatch) arenaTake(e *Endpoint, n int) []byte { return t.take(e, n, 1) }

// take returns n bytes of the arena for a message of up to iovs iovecs,
// flushing the batch first when the arena, the iovecs or the message slots
// are full.
func (t *txBatch) take(e *Endpoint, n, iovs int) []byte {
	if t.arena == nil {
		t.arena = make([]byte, 0, arenaSize)
	}
	if cap(t.arena)-len(t.arena) < n || len(t.msgs) == cap(t.msgs) || len(t.pkts) == cap(t.pkts) || cap(t.iovs)-len(t.iovs) < iovs {
		e.flush(t)
	}
	start := len(t.arena)
	t.arena = t.arena[:start+n]
	return t.arena[start : start+n : start+n]
}

// addArena adds a message of segs datagrams of segSize bytes (the last
// may be shorter) held in b.
func (t *txBatch) addArena(pkt *stack.PacketBuffer, o *outgoing, b []byte, segSize, segs int) {
	start := len(t.iovs)
	if len(b) > 0 {
		t.iovs = append(t.iovs, unix.Iovec{Base: &b[0]})
		t.iovs[len(t.iovs)-1].SetLen(len(b))
	}
	t.addMsg(pkt, o, start, len(b), segSize, segs)
}

// addMsg adds a message of segs datagrams of segSize bytes (the last may
// be shorter), size bytes in all, whose iovecs are t.iovs[start:].
func (t *txBatch) addMsg(pkt *stack.PacketBuffer, o *outgoing, start, size, segSize, segs int) {
	t.pkts = append(t.pkts, txPkt{pkt, *o})
	t.msgs = append(t.msgs, txMsg{first: len(t.pkts) - 1, count: 1, segSize: segSize, bytes: size, segs: segs, closed: true})
	i := len(t.hs)
	t.hs = append(t.hs, mmsghdr{})
	hdr := &t.hs[i].hdr
	hdr.Name = (*byte)(unsafe.Pointer(&t.names[i]))
	hdr.Namelen = putSockaddr(&t.names[i], t.sock.e.cfg.toHost(o.dst), o.dstPort)
	if len(t.iovs) > start {
		hdr.Iov = &t.iovs[start]
		hdr.Iovlen = uint64(len(t.iovs) - start)
	}
}

// resendArena sends the datagrams of arena message i one by one, after
// the kernel refused the train: its iovecs cut at every segSize bytes.
func (e *Endpoint) resendArena(t *txBatch, i int) {
	m := &t.msgs[i]
	p := &t.pkts[m.first]
	h := &t.hs[i].hdr
	iovs := unsafe.Slice(h.Iov, h.Iovlen)
	var cur unix.Iovec // the rest of iovs[0]
	if len(iovs) > 0 {
		cur = iovs[0]
	}
	for len(iovs) > 0 {
		one := newTxBatch(1)
		one.sock = t.sock
		size := 0
		for len(iovs) > 0 && size < m.segSize {
			n := min(int(cur.Len), m.segSize-size)
			if n > 0 {
				one.iovs = append(one.iovs, unix.Iovec{Base: cur.Base})
				one.iovs[len(one.iovs)-1].SetLen(n)
			}
			size += n
			if n < int(cur.Len) {
				cur.Base = (*byte)(unsafe.Add(unsafe.Pointer(cur.Base), n))
				cur.SetLen(int(cur.Len) - n)
				continue
			}
			if iovs = iovs[1:]; len(iovs) > 0 {
				cur = iovs[0]
			}
		}
		one.addMsg(p.pkt, &p.o, 0, size, m.segSize, 1)
		e.flush(one)
	}
}
