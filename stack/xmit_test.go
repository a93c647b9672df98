package stack_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/stack"
)

// ttHeader returns the TT header for id.
func ttHeader(id uint32) []byte {
	h := []byte{ttMagic, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[4:], id)
	return h
}

// xmit sends data through so as a TT datagram of tunnel id 1, built the way
// a Transmitter builds one, from an inner packet with headroom bytes
// reserved.
func xmit(so *stack.Socket, data []byte, headroom int, p stack.XmitParams) error {
	inner := innerPacket(data, headroom)
	out, th := stack.NewTunnelPacket(inner, ttHeaderLen)
	inner.DecRef()
	copy(th, ttHeader(1))
	return so.Xmit(out, p)
}

// openSocket opens a tunnel socket with a recorder encap on the wire host.
func (h *wireHost) openSocket(tb testing.TB, cfg stack.SocketConfig) (*stack.Socket, *recorder) {
	tb.Helper()
	rec := &recorder{}
	if cfg.Local.Port() == 0 {
		cfg.Local = netip.AddrPortFrom(cfg.Local.Addr(), 7000)
	}
	so, err := h.st.OpenTunnelSocket(cfg, rec)
	if err != nil {
		tb.Fatalf("OpenTunnelSocket: %v", err)
	}
	tb.Cleanup(func() { so.Close() })
	return so, rec
}

func TestXmitOuterHeader(t *testing.T) {
	second4 := netip.MustParseAddr("192.0.2.10")
	tests := []struct {
		name   string
		cfg    stack.SocketConfig
		params stack.XmitParams
		want   outerUDP // v6, src, dst, ttl, tos, df, flowLabel are compared
	}{
		{
			name:   "ipv4 all fields",
			params: stack.XmitParams{Dst: peer4, DstPort: 8000, SrcPort: 50000, TTL: 17, TOS: 0xb8, DF: true},
			want:   outerUDP{src: netip.AddrPortFrom(local4, 50000), dst: netip.AddrPortFrom(peer4, 8000), ttl: 17, tos: 0xb8, df: true},
		},
		{
			name:   "ipv4 defaults",
			params: stack.XmitParams{Dst: peer4, DstPort: 8000},
			want:   outerUDP{src: netip.AddrPortFrom(local4, 7000), dst: netip.AddrPortFrom(peer4, 8000), ttl: 64},
		},
		{
			name:   "ipv4 explicit source",
			params: stack.XmitParams{Src: second4, Dst: peer4, DstPort: 8000},
			want:   outerUDP{src: netip.AddrPortFrom(second4, 7000), dst: netip.AddrPortFrom(peer4, 8000), ttl: 64},
		},
		{
			name:   "bound socket source",
			cfg:    stack.SocketConfig{Local: netip.AddrPortFrom(second4, 7000)},
			params: stack.XmitParams{Dst: peer4, DstPort: 8000},
			want:   outerUDP{src: netip.AddrPortFrom(second4, 7000), dst: netip.AddrPortFrom(peer4, 8000), ttl: 64},
		},
		{
			name:   "connected socket peer",
			cfg:    stack.SocketConfig{Peer: netip.AddrPortFrom(peer4, 9000)},
			params: stack.XmitParams{},
			want:   outerUDP{src: netip.AddrPortFrom(local4, 7000), dst: netip.AddrPortFrom(peer4, 9000), ttl: 64},
		},
		{
			name:   "ipv6 hop limit and traffic class",
			params: stack.XmitParams{Dst: peer6, DstPort: 8000, SrcPort: 50001, TTL: 9, TOS: 0x28},
			want:   outerUDP{v6: true, src: netip.AddrPortFrom(local6, 50001), dst: netip.AddrPortFrom(peer6, 8000), ttl: 9, tos: 0x28},
		},
		{
			name:   "ipv6 flow label",
			params: stack.XmitParams{Dst: peer6, DstPort: 8000, SrcPort: 50001, TTL: 9, TOS: 0x28, FlowLabel: 0x12345},
			want:   outerUDP{v6: true, src: netip.AddrPortFrom(local6, 50001), dst: netip.AddrPortFrom(peer6, 8000), ttl: 9, tos: 0x28, flowLabel: 0x12345},
		},
		{
			name:   "ipv6 flow label default hop limit",
			params: stack.XmitParams{Dst: peer6, DstPort: 8000, FlowLabel: 0xfff54321},
			want:   outerUDP{v6: true, src: netip.AddrPortFrom(local6, 7000), dst: netip.AddrPortFrom(peer6, 8000), ttl: 64, flowLabel: 0x54321},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			if err := h.st.AddAddress(h.nic, netip.PrefixFrom(second4, 24)); err != nil {
				t.Fatal(err)
			}
			so, _ := h.openSocket(t, tt.cfg)
			data := pattern(301, 3)
			if err := xmit(so, data, 128, tt.params); err != nil {
				t.Fatalf("Xmit: %v", err)
			}
			o := parseOuter(t, h.readUDP(t))
			got := outerUDP{v6: o.v6, src: o.src, dst: o.dst, ttl: o.ttl, tos: o.tos, df: o.df, flowLabel: o.flowLabel}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(outerUDP{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("outer header (-want +got):\n%s", diff)
			}
			wantPayload := append(ttHeader(1), data...)
			if !bytes.Equal(o.payload, wantPayload) {
				t.Errorf("UDP payload differs from TT header + data:\n got % x\nwant % x", o.payload, wantPayload)
			}
			if int(o.udpLen) != header.UDPMinimumSize+len(wantPayload) {
				t.Errorf("UDP length %d, want %d", o.udpLen, header.UDPMinimumSize+len(wantPayload))
			}
			if !o.checksumValid || o.checksum == 0 {
				t.Errorf("UDP checksum %#04x not valid", o.checksum)
			}
			s := so.Counters().Stats()
			if s.TxPackets != 1 || s.TxBytes != uint64(len(wantPayload)) || s.TotalDrops() != 0 {
				t.Errorf("counters %v, want 1 packet of %d bytes, no drops", s, len(wantPayload))
			}
		})
	}
}

func TestXmitDFTooBig(t *testing.T) {
	const mtu = 1500
	h := newWireHost(t, mtu)
	so, _ := h.openSocket(t, stack.SocketConfig{})
	fits := mtu - header.IPv4MinimumSize - ttEncapLen // inner bytes that fill the MTU exactly
	p := stack.XmitParams{Dst: peer4, DstPort: 8000, DF: true}

	if err := xmit(so, pattern(fits, 0), 128, p); err != nil {
		t.Fatalf("Xmit of an MTU-sized DF packet: %v", err)
	}
	if o := parseOuter(t, h.readUDP(t)); o.ipLen != mtu || !o.df {
		t.Errorf("on the wire: %d bytes, DF %v; want %d, DF", o.ipLen, o.df, mtu)
	}

	err := xmit(so, pattern(fits+1, 0), 128, p)
	if !errors.Is(err, stack.ErrTooBig) {
		t.Fatalf("Xmit one byte over the MTU with DF: %v, want ErrTooBig", err)
	}
	var tb *stack.TooBigError
	if !errors.As(err, &tb) || tb.MTU != mtu {
		t.Errorf("error %v: want a *TooBigError with MTU %d", err, mtu)
	}
	h.expectQuiet(t)
	s := so.Counters().Stats()
	if s.Dropped(stack.DropTooBig) != 1 || s.TxPackets != 1 {
		t.Errorf("counters %v, want 1 sent and 1 too_big", s)
	}
	if got, want := stack.DropReasonOf(err), stack.DropTooBig; got != want {
		t.Errorf("DropReasonOf = %v, want %v", got, want)
	}

	// A datagram no IP header can describe is refused even without DF.
	err = xmit(so, pattern(0xffff, 0), 128, stack.XmitParams{Dst: peer4, DstPort: 8000})
	if !errors.Is(err, stack.ErrTooBig) {
		t.Errorf("Xmit of a 64 KiB datagram: %v, want ErrTooBig", err)
	}
}

// fragment is one IP fragment read from the wire.
type fragment struct {
	offset  int
	more    bool
	payload []byte
}

// reassemble reads the fragments of one outer datagram from the wire and
// returns the UDP datagram.
func reassemble(tb testing.TB, h *wireHost, v6 bool, mtu int) (udp header.UDP, n int) {
	tb.Helper()
	var frags []fragment
	total := -1
	got := 0
	for total < 0 || got < total {
		b := h.read(tb)
		if len(b) > mtu {
			tb.Errorf("fragment of %d bytes exceeds the MTU %d", len(b), mtu)
		}
		var f fragment
		if v6 {
			ip := header.IPv6(b)
			if ip.NextHeader() != header.IPv6FragmentHeader {
				continue // NDP and such
			}
			fh := header.IPv6Fragment(ip.Payload())
			if fh.TransportProtocol() != header.UDPProtocolNumber {
				tb.Fatalf("fragment of protocol %d", fh.TransportProtocol())
			}
			f = fragment{offset: int(fh.FragmentOffset()) * 8, more: fh.More(), payload: fh.Payload()}
		} else {
			ip := header.IPv4(b)
			if ip.TransportProtocol() != header.UDPProtocolNumber {
				continue
			}
			if !ip.IsChecksumValid() {
				tb.Errorf("fragment with a bad IPv4 header checksum")
			}
			f = fragment{offset: int(ip.FragmentOffset()), more: ip.More(), payload: ip.Payload()}
		}
		frags = append(frags, f)
		got += len(f.payload)
		if !f.more {
			total = f.offset + len(f.payload)
		}
	}
	buf := make([]byte, total)
	for _, f := range frags {
		copy(buf[f.offset:], f.payload)
	}
	return header.UDP(buf), len(frags)
}

func TestXmitFragmentsWithoutDF(t *testing.T) {
	const mtu = 1280
	for _, tc := range []struct {
		name      string
		src, dst  netip.Addr
		flowLabel uint32
	}{
		{"ipv4", local4, peer4, 0},
		{"ipv6", local6, peer6, 0},
		{"ipv6 flow label", local6, peer6, 0xabcde},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newWireHost(t, mtu)
			so, _ := h.openSocket(t, stack.SocketConfig{})
			data := pattern(3000, 7)
			if err := xmit(so, data, 128, stack.XmitParams{Dst: tc.dst, DstPort: 8000, FlowLabel: tc.flowLabel}); err != nil {
				t.Fatalf("Xmit of %d bytes over MTU %d: %v", len(data), mtu, err)
			}
			u, n := reassemble(t, h, tc.dst.Is6(), mtu)
			if n < 3 {
				t.Errorf("%d fragments, want at least 3", n)
			}
			if int(u.Length()) != len(u) || u.DestinationPort() != 8000 {
				t.Fatalf("reassembled UDP header: length %d of %d, port %d", u.Length(), len(u), u.DestinationPort())
			}
			if want := append(ttHeader(1), data...); !bytes.Equal(u.Payload(), want) {
				t.Errorf("reassembled payload differs")
			}
			srcA, dstA := tcpip.AddrFromSlice(tc.src.AsSlice()), tcpip.AddrFromSlice(tc.dst.AsSlice())
			if !u.IsChecksumValid(srcA, dstA, checksum.Checksum(u.Payload(), 0)) {
				t.Errorf("reassembled datagram has a bad checksum")
			}
		})
	}
}

// icmpError builds an ICMP error from router to us quoting the outer
// packet q: "fragmentation needed"/"packet too big" with mtu when typ is
// "too big", else the destination unreachable code given.
func icmpError(q []byte, v6 bool, typ string, mtu uint32) []byte {
	if len(q) > 500 {
		q = q[:500]
	}
	if !v6 {
		icmp := make([]byte, header.ICMPv4MinimumSize+len(q))
		h := header.ICMPv4(icmp)
		h.SetType(header.ICMPv4DstUnreachable)
		switch typ {
		case "too big":
			h.SetCode(header.ICMPv4FragmentationNeeded)
			h.SetMTU(uint16(mtu))
		case "port":
			h.SetCode(header.ICMPv4PortUnreachable)
		case "host":
			h.SetCode(header.ICMPv4HostUnreachable)
		}
		copy(icmp[header.ICMPv4MinimumSize:], q)
		h.SetChecksum(^checksum.Checksum(icmp, 0))
		b := make([]byte, header.IPv4MinimumSize+len(icmp))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			TTL:         64,
			Protocol:    uint8(header.ICMPv4ProtocolNumber),
			SrcAddr:     tcpip.AddrFrom4(router4.As4()),
			DstAddr:     tcpip.AddrFrom4(local4.As4()),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], icmp)
		return b
	}
	if len(q) > 1280-48 {
		q = q[:1280-48]
	}
	icmp := make([]byte, header.ICMPv6MinimumSize+len(q))
	h := header.ICMPv6(icmp)
	switch typ {
	case "too big":
		h.SetType(header.ICMPv6PacketTooBig)
		h.SetMTU(mtu)
	case "port":
		h.SetType(header.ICMPv6DstUnreachable)
		h.SetCode(header.ICMPv6PortUnreachable)
	case "host":
		h.SetType(header.ICMPv6DstUnreachable)
		h.SetCode(header.ICMPv6NetworkUnreachable)
	}
	copy(icmp[header.ICMPv6MinimumSize:], q)
	src, dst := tcpip.AddrFrom16(router6.As16()), tcpip.AddrFrom16(local6.As16())
	h.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header:      h[:header.ICMPv6MinimumSize],
		Src:         src,
		Dst:         dst,
		PayloadCsum: checksum.Checksum(q, 0),
		PayloadLen:  len(q),
	}))
	b := make([]byte, header.IPv6MinimumSize+len(icmp))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(icmp)),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          64,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	copy(b[header.IPv6MinimumSize:], icmp)
	return b
}

func TestICMPErrorsReachEncap(t *testing.T) {
	tests := []struct {
		name string
		dst  netip.Addr
		typ  string
		mtu  uint32
		want stack.ICMPError
	}{
		{"ipv4 fragmentation needed", peer4, "too big", 1200, stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: netip.AddrPortFrom(peer4, 8000), MTU: 1200}},
		{"ipv6 packet too big", peer6, "too big", 1280, stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: netip.AddrPortFrom(peer6, 8000), MTU: 1280}},
		{"ipv4 port unreachable", peer4, "port", 0, stack.ICMPError{Kind: stack.ICMPPortUnreachable, Dst: netip.AddrPortFrom(peer4, 8000)}},
		{"ipv6 port unreachable", peer6, "port", 0, stack.ICMPError{Kind: stack.ICMPPortUnreachable, Dst: netip.AddrPortFrom(peer6, 8000)}},
		{"ipv4 host unreachable", peer4, "host", 0, stack.ICMPError{Kind: stack.ICMPUnreachable, Dst: netip.AddrPortFrom(peer4, 8000)}},
		{"ipv6 network unreachable", peer6, "host", 0, stack.ICMPError{Kind: stack.ICMPUnreachable, Dst: netip.AddrPortFrom(peer6, 8000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			so, rec := h.openSocket(t, stack.SocketConfig{})
			if err := xmit(so, pattern(1000, 1), 128, stack.XmitParams{Dst: tt.dst, DstPort: 8000, DF: true}); err != nil {
				t.Fatal(err)
			}
			q := h.readUDP(t)
			h.inject(icmpError(q, tt.dst.Is6(), tt.typ, tt.mtu))
			if got := so.ICMPErrors(); got != 1 {
				t.Errorf("ICMPErrors = %d, want 1", got)
			}
			if diff := cmp.Diff([]stack.ICMPError{tt.want}, rec.icmpErrors(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("errors the encap got (-want +got):\n%s", diff)
			}
			var wantPMTU uint32
			if tt.want.Kind == stack.ICMPPacketTooBig {
				wantPMTU = tt.mtu
			}
			if got := so.PathMTU(tt.dst); got != wantPMTU {
				t.Errorf("PathMTU(%v) = %d, want %d", tt.dst, got, wantPMTU)
			}
			if got := so.PathMTU(local4); got != 0 {
				t.Errorf("PathMTU of our own address = %d, want 0", got)
			}
		})
	}
}

func TestXmitLearnedPathMTU(t *testing.T) {
	h := newWireHost(t, 1500)
	so, _ := h.openSocket(t, stack.SocketConfig{})
	p := stack.XmitParams{Dst: peer4, DstPort: 8000, DF: true}
	if err := xmit(so, pattern(1400, 1), 128, p); err != nil {
		t.Fatal(err)
	}
	first := h.readUDP(t)
	h.inject(icmpError(first, false, "too big", 1200))
	if got := so.PathMTU(peer4); got != 1200 {
		t.Fatalf("PathMTU = %d after a fragmentation needed of 1200", got)
	}
	fits := 1200 - header.IPv4MinimumSize - ttEncapLen
	err := xmit(so, pattern(fits+1, 1), 128, p)
	var tb *stack.TooBigError
	if !errors.As(err, &tb) || tb.MTU != 1200 || !errors.Is(err, stack.ErrTooBig) {
		t.Errorf("DF Xmit above the path MTU: %v, want TooBigError{MTU: 1200}", err)
	}
	if err := xmit(so, pattern(fits, 1), 128, p); err != nil {
		t.Errorf("DF Xmit at the path MTU: %v", err)
	}
	if o := parseOuter(t, h.readUDP(t)); o.ipLen != 1200 {
		t.Errorf("sent %d bytes, want 1200", o.ipLen)
	}
	// Without DF the packet leaves (gVisor fragments by the route MTU).
	if err := xmit(so, pattern(fits+1, 1), 128, stack.XmitParams{Dst: peer4, DstPort: 8000}); err != nil {
		t.Errorf("Xmit without DF above the path MTU: %v", err)
	}
	// Other destinations keep the route MTU.
	if err := xmit(so, pattern(fits+1, 1), 128, stack.XmitParams{Dst: other4, DstPort: 8000, DF: true}); err != nil {
		t.Errorf("DF Xmit to another destination: %v", err)
	}
	// A later, larger MTU does not raise the path MTU.
	h.inject(icmpError(first, false, "too big", 1400))
	if got := so.ICMPErrors(); got != 2 {
		t.Errorf("ICMPErrors = %d, want 2", got)
	}
	if got := so.PathMTU(peer4); got != 1200 {
		t.Errorf("PathMTU = %d after a larger MTU was reported, want 1200", got)
	}
	if s := so.Counters().Stats(); s.Dropped(stack.DropTooBig) != 1 {
		t.Errorf("DropTooBig = %d, want 1", s.Dropped(stack.DropTooBig))
	}
}

func TestXmitErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    stack.SocketConfig
		params func(h *wireHost) stack.XmitParams
		close  bool
		want   error
		reason stack.DropReason
	}{
		{
			name:   "route loop",
			params: func(h *wireHost) stack.XmitParams { return stack.XmitParams{Dst: peer4, DstPort: 8000, Device: h.nic} },
			want:   stack.ErrLoop,
			reason: stack.DropLoop,
		},
		{
			name:   "route loop ipv6",
			params: func(h *wireHost) stack.XmitParams { return stack.XmitParams{Dst: peer6, DstPort: 8000, Device: h.nic} },
			want:   stack.ErrLoop,
			reason: stack.DropLoop,
		},
		{
			name: "no route ipv4",
			params: func(*wireHost) stack.XmitParams {
				return stack.XmitParams{Dst: netip.MustParseAddr("198.51.100.1"), DstPort: 8000}
			},
			want:   stack.ErrNoRoute,
			reason: stack.DropNoRoute,
		},
		{
			name: "no route ipv6",
			params: func(*wireHost) stack.XmitParams {
				return stack.XmitParams{Dst: netip.MustParseAddr("2001:db9::1"), DstPort: 8000}
			},
			want:   stack.ErrNoRoute,
			reason: stack.DropNoRoute,
		},
		{
			name:   "no destination",
			params: func(*wireHost) stack.XmitParams { return stack.XmitParams{DstPort: 8000} },
			want:   stack.ErrNoRoute,
			reason: stack.DropNoRoute,
		},
		{
			name:   "closed",
			params: func(*wireHost) stack.XmitParams { return stack.XmitParams{Dst: peer4, DstPort: 8000} },
			close:  true,
			want:   stack.ErrClosed,
			reason: stack.DropDeviceDown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			so, _ := h.openSocket(t, tt.cfg)
			if tt.close {
				so.Close()
			}
			err := xmit(so, pattern(100, 0), 128, tt.params(h))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Xmit: %v, want %v", err, tt.want)
			}
			if got := stack.DropReasonOf(err); got != tt.reason {
				t.Errorf("DropReasonOf(%v) = %v, want %v", err, got, tt.reason)
			}
			s := so.Counters().Stats()
			if s.Dropped(tt.reason) != 1 || s.TotalDrops() != 1 || s.TxPackets != 0 {
				t.Errorf("counters %v, want exactly one %v drop", s, tt.reason)
			}
			h.expectQuiet(t)
		})
	}
}

func TestXmitRejectsForeignPacket(t *testing.T) {
	h := newWireHost(t, 0)
	so, _ := h.openSocket(t, stack.SocketConfig{})
	// A packet not built by NewTunnelPacket has no room for the UDP header.
	pkt := innerPacket(pattern(40, 0), 64)
	err := so.Xmit(pkt, stack.XmitParams{Dst: peer4, DstPort: 8000})
	if !errors.Is(err, stack.ErrInvalid) {
		t.Errorf("Xmit of a foreign packet: %v, want ErrInvalid", err)
	}
	if got := so.Counters().Stats().Dropped(stack.DropBadHeader); got != 1 {
		t.Errorf("DropBadHeader = %d, want 1", got)
	}
	h.expectQuiet(t)
}

func TestXmitNestingLimit(t *testing.T) {
	h := newWireHost(t, 0)
	so, _ := h.openSocket(t, stack.SocketConfig{})
	p := stack.XmitParams{Dst: peer4, DstPort: 8000}
	// wrap nests data n times, as n tunnels stacked on one path would.
	wrap := func(n int) *stack.PacketBuffer {
		pkt := innerPacket(pattern(64, 0), 1024)
		for i := 1; i <= n; i++ {
			out, th := stack.NewTunnelPacket(pkt, ttHeaderLen)
			copy(th, ttHeader(uint32(i)))
			pkt.DecRef()
			if got := stack.NestingDepth(out); got != i {
				t.Errorf("NestingDepth after %d encapsulations = %d", i, got)
			}
			pkt = out
		}
		return pkt
	}
	if err := so.Xmit(wrap(stack.MaxNesting), p); err != nil {
		t.Fatalf("Xmit at MaxNesting: %v", err)
	}
	h.readUDP(t)
	err := so.Xmit(wrap(stack.MaxNesting+1), p)
	if !errors.Is(err, stack.ErrNestingLimit) {
		t.Fatalf("Xmit past MaxNesting: %v, want ErrNestingLimit", err)
	}
	h.expectQuiet(t)
	if s := so.Counters().Stats(); s.Dropped(stack.DropNestingLimit) != 1 || s.TxPackets != 1 {
		t.Errorf("counters %v, want 1 sent, 1 nesting_limit", s)
	}
}

func TestNewTunnelPacketSlowPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		dst  netip.Addr
		// pushed is a header the inner stack pushed before the device got
		// the packet; it must travel with the data.
		pushed int
	}{
		{"ipv4", peer4, 0},
		{"ipv6", peer6, 0},
		{"ipv4 pushed header", peer4, 20},
		{"ipv6 flow label", peer6, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			so, _ := h.openSocket(t, stack.SocketConfig{})
			data := pattern(777, 2)
			hdr := pattern(tc.pushed, 100)
			var wire [2][]byte
			for i, headroom := range []int{256, 0} {
				inner := innerPacket(data, headroom+tc.pushed)
				if tc.pushed > 0 {
					copy(inner.NetworkHeader().Push(tc.pushed), hdr)
				}
				out, th := stack.NewTunnelPacket(inner, ttHeaderLen)
				inner.DecRef()
				if len(th) != ttHeaderLen {
					t.Fatalf("tunnel header of %d bytes, want %d", len(th), ttHeaderLen)
				}
				if got := len(out.TransportHeader().Slice()); got != ttEncapLen {
					t.Errorf("headroom %d: transport header %d bytes, want %d", headroom, got, ttEncapLen)
				}
				if got := out.AvailableHeaderBytes(); got < header.IPv6MinimumSize {
					t.Errorf("headroom %d: %d bytes left for the outer IP header", headroom, got)
				}
				if got, want := out.Data().AsRange().ToSlice(), append(append([]byte(nil), hdr...), data...); !bytes.Equal(got, want) {
					t.Errorf("headroom %d: data of the tunnel packet differs from the inner packet", headroom)
				}
				copy(th, ttHeader(9))
				p := stack.XmitParams{Dst: tc.dst, DstPort: 8000, SrcPort: 1234, TTL: 33}
				if tc.name == "ipv6 flow label" {
					p.FlowLabel = 77
				}
				if err := so.Xmit(out, p); err != nil {
					t.Fatalf("headroom %d: Xmit: %v", headroom, err)
				}
				b := h.readUDP(t)
				if b[0]>>4 == 4 {
					// The IPv4 ID differs between datagrams: mask it and the
					// header checksum that covers it.
					b[4], b[5], b[10], b[11] = 0, 0, 0, 0
				}
				wire[i] = b
			}
			if !bytes.Equal(wire[0], wire[1]) {
				t.Errorf("slow path differs from fast path:\nfast % x\nslow % x", wire[0], wire[1])
			}
		})
	}
}

// loopDevices builds a real route loop between two TT devices of one
// stack: device A's remote is routed through device B and B's through A. It
// writes one UDP datagram of size bytes into the loop and fails the test
// unless the write comes back out of the recursion within 5 s.
func loopDevices(t *testing.T, size int) (a, b *ttDevice, tt *ttSocket) {
	t.Helper()
	st := newStack(t)
	tt = openTT(t, st, stack.SocketConfig{})
	a = tt.addDevice(t, st, ttConfig{ID: 1, Remote: netip.MustParseAddrPort("10.9.0.2:7777")})
	b = tt.addDevice(t, st, ttConfig{ID: 2, Remote: netip.MustParseAddrPort("10.8.0.2:7777")})
	if err := st.AddAddress(a.NIC(), netip.MustParsePrefix("10.8.0.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAddress(b.NIC(), netip.MustParsePrefix("10.9.0.1/24")); err != nil {
		t.Fatal(err)
	}
	c, err := st.DialUDP(netip.MustParseAddrPort("10.8.0.2:9"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(pattern(size, 0))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
	case <-time.After(5 * time.Second):
		// Closing the devices makes every WritePackets drop, which unwinds
		// the recursion before the cleanups run.
		a.Close()
		b.Close()
		<-done
		t.Fatalf("a %d-byte packet written into a tunnel loop did not come back (A %v, B %v)", size, a.Counters().Stats(), b.Counters().Stats())
	}
	return a, b, tt
}

// TestNestingLoopTerminates: one packet written into a tunnel loop must come
// back out of the recursion, dropped at the nesting limit, not loop or
// overflow the stack.
func TestNestingLoopTerminates(t *testing.T) {
	a, b, tt := loopDevices(t, 100)
	sa, sb, ss := a.Counters().Stats(), b.Counters().Stats(), tt.sock.Counters().Stats()
	// Depths 0..7 are sent, alternately by A and B; depth 8 reaches A again
	// and is dropped there.
	if sa.TxPackets != 4 || sb.TxPackets != 4 {
		t.Errorf("devices sent %d and %d packets, want 4 and 4", sa.TxPackets, sb.TxPackets)
	}
	if got := sa.Dropped(stack.DropNestingLimit) + sb.Dropped(stack.DropNestingLimit) + ss.Dropped(stack.DropNestingLimit); got != 1 {
		t.Errorf("nesting drops: %d, want 1 (A %v, B %v, socket %v)", got, sa, sb, ss)
	}
	if ss.TxPackets != 8 {
		t.Errorf("socket sent %d datagrams, want 8", ss.TxPackets)
	}
}

// TestReceiveNestingLimit delivers one datagram holding tunnels nested
// deeper than MaxNesting, all to this host: decapsulation must stop at the
// limit, counted, instead of recursing once per layer.
func TestReceiveNestingLimit(t *testing.T) {
	const layers = stack.MaxNesting + 4
	h := newWireHost(t, 65535)
	tt := openTT(t, h.st, stack.SocketConfig{})
	dev := tt.addDevice(t, h.st, ttConfig{ID: 5, Remote: netip.AddrPortFrom(peer4, ttPort)})
	devAddr := netip.MustParseAddr("10.5.0.1")
	if err := h.st.AddAddress(dev.NIC(), netip.PrefixFrom(devAddr, 24)); err != nil {
		t.Fatal(err)
	}
	// Innermost first: a datagram to port 9, then layer on layer of
	// IPv4/UDP/TT addressed to the device, the outermost to the underlay.
	pkt := udpPacket(netip.MustParseAddrPort("10.5.0.2:1"), netip.AddrPortFrom(devAddr, 9), []byte("core"), csumGood)
	for i := 0; i < layers; i++ {
		src, dst := netip.MustParseAddrPort("10.5.0.2:1"), netip.AddrPortFrom(devAddr, ttPort)
		if i == layers-1 {
			src, dst = netip.AddrPortFrom(peer4, 1), netip.AddrPortFrom(local4, ttPort)
		}
		pkt = udpPacket(src, dst, append(ttHeader(5), pkt...), csumGood)
	}
	done := make(chan struct{})
	go func() {
		h.inject(pkt)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("nested datagram did not finish")
	}
	s := tt.sock.Counters().Stats()
	if s.RxPackets != stack.MaxNesting || s.Dropped(stack.DropNestingLimit) != 1 {
		t.Errorf("socket counters %v: want %d datagrams received and 1 nesting_limit drop (of %d layers)", s, stack.MaxNesting, layers)
	}
}

// TestNestingLoopWithFragmentsTerminates is TestNestingLoopTerminates with
// a datagram that outgrows the devices' MTU on its way round the loop, so
// that the outer IP layer fragments it: 1428 bytes of inner IP fit A's MTU
// of 1464 and, encapsulated once, B's; encapsulated twice they do not.
func TestNestingLoopWithFragmentsTerminates(t *testing.T) {
	a, b, _ := loopDevices(t, 1400)
	nest := a.Counters().Stats().Dropped(stack.DropNestingLimit) + b.Counters().Stats().Dropped(stack.DropNestingLimit)
	if nest == 0 {
		t.Errorf("no nesting drop: A %v, B %v", a.Counters().Stats(), b.Counters().Stats())
	}
}
