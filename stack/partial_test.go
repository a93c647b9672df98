package stack_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

// sum16 is the Internet checksum's ones' complement sum of b added to sum,
// written apart from gVisor's so that the tests check one against the
// other.
func sum16(b []byte, sum uint32) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum
}

// l4Pseudo is the pseudo-header sum of the IP packet ip (header length
// hl) for its L4 protocol and length.
func l4Pseudo(ip []byte, hl int) uint32 {
	var sum uint32
	proto := ip[9]
	if ip[0]>>4 == 6 {
		sum, proto = sum16(ip[8:40], 0), ip[6]
	} else {
		sum = sum16(ip[12:20], 0)
	}
	n := len(ip) - hl
	return sum16([]byte{0, proto, byte(n >> 8), byte(n)}, sum)
}

// craftL4 builds an IPv4 or IPv6 packet carrying TCP (proto 6) or UDP
// (17) with payload, its checksum set by mode: "ok", "partial" (the
// pseudo-header sum), "bad" or "zero".
func craftL4(v6 bool, proto uint8, payload []byte, mode string) []byte {
	l4Len := 20 + len(payload)
	if proto == 17 {
		l4Len = 8 + len(payload)
	}
	var ip []byte
	hl := 20
	if v6 {
		hl = 40
		ip = make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(ip[4:], uint16(l4Len))
		ip[8], ip[23], ip[24], ip[39] = 0xfd, 1, 0xfd, 2
	} else {
		ip = make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(ip[2:], uint16(20+l4Len))
		copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum16(ip, 0)))
	}
	l4 := make([]byte, l4Len-len(payload))
	binary.BigEndian.PutUint16(l4, 1234)
	binary.BigEndian.PutUint16(l4[2:], 5678)
	fieldOff := 6
	if proto == 6 {
		fieldOff = 16
		binary.BigEndian.PutUint32(l4[4:], 1000)
		l4[12], l4[13] = 5<<4, 0x18
		binary.BigEndian.PutUint16(l4[14:], 512)
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(l4Len))
	}
	pkt := append(append(ip, l4...), payload...)
	pseudo := l4Pseudo(pkt, hl)
	var field uint16
	switch mode {
	case "ok", "bad":
		field = ^uint16(sum16(pkt[hl:], pseudo))
		if mode == "bad" {
			field ^= 0x1001
		}
	case "partial":
		field = uint16(pseudo)
	}
	binary.BigEndian.PutUint16(pkt[hl+fieldOff:], field)
	return pkt
}

// l4Valid reports whether the L4 checksum of ip verifies.
func l4Valid(ip []byte) bool {
	hl := int(ip[0]&0xf) * 4
	if ip[0]>>4 == 6 {
		hl = 40
	}
	return sum16(ip[hl:], l4Pseudo(ip, hl)) == 0xffff
}

// decapsulated returns a packet whose data is inner, as a device's Deliver
// gets it: outer headers (with an odd-looking sum of their own) consumed
// in front of it, so that a sum counted from the buffer's start, not the
// data's, shows.
//
// The bytes come in several views cut at odd offsets (the last one of
// them shared with another buffer), so that sums over chunks and the
// pull-ups that write the field are exercised.
func decapsulated(inner []byte) *gstack.PacketBuffer {
	outer := []byte{0x45, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
		0x12, 0xb5, 0x12, 0xb5, 0xff, 0xff, 0x5a, 0xa5}
	all := append(outer, inner...)
	var buf buffer.Buffer
	for len(all) > 0 {
		n := min(len(all), 31)
		buf.Append(buffer.NewViewWithData(all[:n]))
		all = all[n:]
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buf})
	pkt.NetworkHeader().Consume(20)
	pkt.TransportHeader().Consume(8)
	return pkt
}

// withOptions inserts an IPv4 NOP option word into the IPv4 packet ip
// (IHL 6), keeping its partial TCP/UDP checksum partial.
func withOptions(ip []byte) []byte {
	out := append(append(append([]byte(nil), ip[:20]...), 1, 1, 1, 1), ip[20:]...)
	out[0] = 0x46
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	out[10], out[11] = 0, 0
	binary.BigEndian.PutUint16(out[10:], ^uint16(sum16(out[:24], 0)))
	return out
}

// TestCompletePartial: a TCP or UDP checksum that holds the pseudo-header
// sum is completed, over the packet only (not the link's padding behind
// it); anything else is left as it is.
func TestCompletePartial(t *testing.T) {
	payload := []byte("partial checksums from a sender on this host, odd length")
	frag := craftL4(false, 6, payload, "partial")
	frag[6] = 0x20 // MF
	binary.BigEndian.PutUint16(frag[10:], 0)
	binary.BigEndian.PutUint16(frag[10:], ^uint16(sum16(frag[:20], 0)))
	for _, tc := range []struct {
		name     string
		pkt      []byte
		l2       bool // behind an Ethernet header, with 6 bytes of padding
		complete bool
	}{
		{name: "tcp4", pkt: craftL4(false, 6, payload, "partial"), complete: true},
		{name: "tcp6", pkt: craftL4(true, 6, payload, "partial"), complete: true},
		{name: "udp4", pkt: craftL4(false, 17, payload, "partial"), complete: true},
		{name: "udp6", pkt: craftL4(true, 17, payload[:7], "partial"), complete: true},
		{name: "tcp4-l2-padded", pkt: craftL4(false, 6, nil, "partial"), l2: true, complete: true},
		{name: "udp6-l2", pkt: craftL4(true, 17, payload, "partial"), l2: true, complete: true},
		{name: "tcp4-options", pkt: withOptions(craftL4(false, 6, payload, "partial")), complete: true},
		{name: "tcp4-valid", pkt: craftL4(false, 6, payload, "ok")},
		{name: "tcp6-bad", pkt: craftL4(true, 6, payload, "bad")},
		{name: "udp4-none", pkt: craftL4(false, 17, payload, "zero")},
		{name: "fragment", pkt: frag},
		{name: "truncated", pkt: craftL4(false, 6, payload, "partial")[:30]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.pkt
			l3Off := 0
			proto := header.IPv4ProtocolNumber
			if tc.pkt[0]>>4 == 6 {
				proto = header.IPv6ProtocolNumber
			}
			if tc.l2 {
				eth := make([]byte, header.EthernetMinimumSize)
				binary.BigEndian.PutUint16(eth[12:], uint16(proto))
				frame = append(append(eth, tc.pkt...), 0, 0, 0, 0, 0, 0)
				l3Off = header.EthernetMinimumSize
			}
			pkt := decapsulated(frame)
			defer pkt.DecRef()
			// Another holder of the same chunks must not see the write.
			other := pkt.Clone()
			defer other.DecRef()
			got := stack.CompletePartial(pkt.Data(), l3Off, proto)
			if !bytes.Equal(other.Data().AsRange().ToSlice(), frame) {
				t.Fatalf("a clone of the packet changed")
			}
			if got != tc.complete {
				t.Fatalf("completed %v, want %v", got, tc.complete)
			}
			out := pkt.Data().AsRange().ToSlice()
			if !tc.complete {
				if !bytes.Equal(out, frame) {
					t.Fatalf("packet changed")
				}
				return
			}
			ip := out[l3Off : l3Off+len(tc.pkt)]
			if !l4Valid(ip) {
				t.Fatalf("completed checksum does not verify: %x", ip)
			}
			if !bytes.Equal(out[l3Off+len(tc.pkt):], frame[l3Off+len(tc.pkt):]) {
				t.Fatalf("padding changed")
			}
		})
	}
}

// TestDevicePartialChecksums: a device without checksum offload completes
// a partial UDP checksum (counted) so that its inner stack delivers the
// datagram, and still leaves a bad one to the stack, which drops it; a
// device with offload leaves both as they are.
func TestDevicePartialChecksums(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(map[bool]string{false: "verifying", true: "offload"}[offload], func(t *testing.T) {
			st := newStack(t)
			d, err := stack.NewDevice(st, stack.DeviceConfig{Name: "dev", Layer: stack.L3, EncapLen: 16, ChecksumOffload: offload}, &captureTx{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("10.0.0.2/24")); err != nil {
				t.Fatal(err)
			}
			conn, err := gonet.DialUDP(st.GVisor(), &tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{10, 0, 0, 2}), Port: 5678}, nil, ipv4.ProtocolNumber)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			deliver := func(b []byte) {
				pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
				d.Deliver(pkt)
				pkt.DecRef()
			}
			deliver(craftL4(false, 17, []byte("bad"), "bad"))
			deliver(craftL4(false, 17, []byte("partial"), "partial"))
			buf := make([]byte, 64)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			want := "partial"
			if offload {
				want = "bad" // trusted as it came
			}
			if string(buf[:n]) != want {
				t.Fatalf("received %q, want %q", buf[:n], want)
			}
			errs := st.GVisor().Stats().UDP.ChecksumErrors.Value()
			completed := d.Counters().Stats().Completed
			if offload && (completed != 0 || errs != 0) {
				t.Errorf("offload device: %d completed, %d checksum errors; want 0, 0", completed, errs)
			}
			if !offload && (completed != 1 || errs != 1) {
				t.Errorf("%d completed, %d checksum errors; want 1, 1", completed, errs)
			}
		})
	}
}

// FuzzCompletePartial: no input panics, and a packet completed verifies.
func FuzzCompletePartial(f *testing.F) {
	f.Add(craftL4(false, 6, []byte("seed"), "partial"), false)
	f.Add(craftL4(true, 17, []byte("seed"), "partial"), true)
	f.Add(craftL4(false, 17, nil, "ok"), false)
	f.Add(withOptions(craftL4(false, 6, []byte("options"), "partial")), false)
	f.Fuzz(func(t *testing.T, data []byte, l2 bool) {
		if len(data) == 0 {
			return
		}
		proto := tcpip.NetworkProtocolNumber(header.IPv4ProtocolNumber)
		if data[0]>>4 == 6 {
			proto = header.IPv6ProtocolNumber
		}
		l3Off := 0
		if l2 {
			l3Off = header.EthernetMinimumSize
			data = append(make([]byte, l3Off), data...)
		}
		pkt := decapsulated(data)
		defer pkt.DecRef()
		if !stack.CompletePartial(pkt.Data(), l3Off, proto) {
			return
		}
		out := pkt.Data().AsRange().ToSlice()[l3Off:]
		hl, end := 40, 40+int(binary.BigEndian.Uint16(out[4:]))
		if proto == header.IPv4ProtocolNumber {
			hl, end = int(out[0]&0xf)*4, int(binary.BigEndian.Uint16(out[2:]))
		}
		if !l4Valid(out[:end]) || hl > end {
			t.Fatalf("completed packet does not verify: %x", out)
		}
	})
}

// BenchmarkCompletePartial is the per-packet cost a device without
// checksum offload pays to look for a partial checksum: a full-sized TCP
// segment with a valid checksum (the common case) and a partial one (a
// pass over the packet).
func BenchmarkCompletePartial(b *testing.B) {
	payload := make([]byte, 1398)
	for _, mode := range []string{"ok", "partial"} {
		b.Run(mode, func(b *testing.B) {
			frame := craftL4(false, 6, payload, mode)
			b.ReportAllocs()
			for b.Loop() {
				pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
				stack.CompletePartial(pkt.Data(), 0, header.IPv4ProtocolNumber)
				pkt.DecRef()
			}
		})
	}
	b.Run("baseline", func(b *testing.B) {
		frame := craftL4(false, 6, payload, "ok")
		b.ReportAllocs()
		for b.Loop() {
			pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
			pkt.DecRef()
		}
	})
}
