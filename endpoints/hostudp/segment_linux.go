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
// checksum offload do: every such packet is copied into the batch's arena,
// inner TCP/UDP checksums are finished, and a GSO super-packet is cut into
// MSS-sized inner segments, each behind a copy of the tunnel, link, IP and
// TCP headers, that leave as one UDP GSO train.

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
	l4Len := len(p) - h.l4Off
	if h.v6 {
		binary.BigEndian.PutUint16(p[h.ipOff+4:], uint16(l4Len))
	} else {
		ip := header.IPv4(p[h.ipOff:])
		ip.SetTotalLength(uint16(len(p) - h.ipOff))
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
	c := ^checksum.Checksum(l4, sum)
	if c == 0 && h.proto == header.UDPProtocolNumber {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
}

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
	for i, off := 0, 0; off < data; {
		// One train of up to group segments.
		n := min(group, (data-off+mss-1)/mss)
		size := min(n*segSize, n*prefix+data-off)
		b := t.arenaTake(e, size)
		pos := 0
		for range n {
			chunk := min(mss, data-off)
			s := b[pos : pos+prefix+chunk]
			copy(s, hdr[:prefix])
			copyRange(pkt, o.payloadOff+prefix+off, s[prefix:])
			if !h.v6 {
				header.IPv4(s[h.ipOff:]).SetID(id + uint16(i))
			}
			st := header.TCP(s[h.l4Off:])
			st.SetSequenceNumber(seq + uint32(off))
			f := flags
			if off+chunk < data {
				f &^= header.TCPFlagFin | header.TCPFlagPsh
			}
			if i > 0 {
				f &^= header.TCPFlagCwr
			}
			st.SetFlags(uint8(f))
			fixInner(s, &h)
			pos += len(s)
			off += chunk
			i++
		}
		t.addArena(pkt, o, b, segSize, n)
	}
}

// arenaTake returns n bytes of the arena, flushing the batch first when
// the arena or the message slots are full.
func (t *txBatch) arenaTake(e *Endpoint, n int) []byte {
	if t.arena == nil {
		t.arena = make([]byte, 0, arenaSize)
	}
	if cap(t.arena)-len(t.arena) < n || len(t.msgs) == cap(t.msgs) || len(t.pkts) == cap(t.pkts) || len(t.iovs) == cap(t.iovs) {
		e.flush(t)
	}
	start := len(t.arena)
	t.arena = t.arena[:start+n]
	return t.arena[start : start+n : start+n]
}

// addArena adds a message of segs datagrams of segSize bytes (the last
// may be shorter) held in b.
func (t *txBatch) addArena(pkt *stack.PacketBuffer, o *outgoing, b []byte, segSize, segs int) {
	t.pkts = append(t.pkts, txPkt{pkt, *o})
	t.msgs = append(t.msgs, txMsg{first: len(t.pkts) - 1, count: 1, segSize: segSize, bytes: len(b), segs: segs, closed: true})
	i := len(t.hs)
	t.hs = append(t.hs, mmsghdr{})
	hdr := &t.hs[i].hdr
	hdr.Name = (*byte)(unsafe.Pointer(&t.names[i]))
	hdr.Namelen = putSockaddr(&t.names[i], t.sock.e.cfg.toHost(o.dst), o.dstPort)
	if len(b) > 0 {
		t.iovs = append(t.iovs, unix.Iovec{Base: &b[0]})
		t.iovs[len(t.iovs)-1].SetLen(len(b))
		hdr.Iov = &t.iovs[len(t.iovs)-1]
		hdr.Iovlen = 1
	}
}

// resendArena sends the datagrams of an arena message one by one, after
// the kernel refused the train.
func (e *Endpoint) resendArena(t *txBatch, m *txMsg) {
	p := &t.pkts[m.first]
	iov := t.msgIovec(m)
	for off := 0; off < len(iov); off += m.segSize {
		one := newTxBatch(1)
		one.sock = t.sock
		one.addArena(p.pkt, &p.o, iov[off:min(off+m.segSize, len(iov))], m.segSize, 1)
		e.flush(one)
	}
}

// msgIovec returns the arena bytes of arena message m.
func (t *txBatch) msgIovec(m *txMsg) []byte {
	for i := range t.msgs {
		if &t.msgs[i] == m {
			v := t.hs[i].hdr.Iov
			return unsafe.Slice(v.Base, v.Len)
		}
	}
	return nil
}
