package stack_test

// This file holds the test double the framework is tested with: "TT", a
// tiny UDP tunnel protocol defined only here, in an L3 (IP-in-UDP) and an L2
// (Ethernet-in-UDP) flavour, so that a failure points at the framework and
// not at a real protocol. It also holds the underlays: a gVisor
// link/channel endpoint (full control of the outer bytes: inject crafted
// packets, capture what is sent) and memlink pairs between two stacks.

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// The TT header, 8 bytes:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Magic (0x54) |     Layer     |           Reserved            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           Tunnel ID                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ttHeaderLen = 8
	ttMagic     = 0x54
	// ttEncapLen is what TT adds between the outer IP header and the
	// inner frame: UDP and the TT header.
	ttEncapLen = header.UDPMinimumSize + ttHeaderLen
	ttPort     = 7777
)

// ttSocket is TT's encap: one tunnel socket serving devices by tunnel ID.
type ttSocket struct {
	sock *stack.Socket

	mu   sync.Mutex
	devs map[uint32]*ttDevice
}

var _ stack.Encap = (*ttSocket)(nil)

// openTT opens a TT socket on cfg (port ttPort when cfg.Local has none).
func openTT(tb testing.TB, st *stack.Stack, cfg stack.SocketConfig) *ttSocket {
	tb.Helper()
	if cfg.Local.Port() == 0 {
		cfg.Local = netip.AddrPortFrom(cfg.Local.Addr(), ttPort)
	}
	s := &ttSocket{devs: make(map[uint32]*ttDevice)}
	sock, err := st.OpenTunnelSocket(cfg, s)
	if err != nil {
		tb.Fatalf("OpenTunnelSocket(%+v): %v", cfg, err)
	}
	s.sock = sock
	return s
}

// Receive implements stack.Encap: parse the TT header, find the device,
// consume the header and deliver.
func (s *ttSocket) Receive(pkt *stack.PacketBuffer, _, _ netip.AddrPort) stack.Verdict {
	c := s.sock.Counters()
	b, ok := pkt.Data().PullUp(ttHeaderLen)
	if !ok {
		c.Drop(stack.DropTruncated)
		return stack.Consumed
	}
	if b[0] != ttMagic {
		c.Drop(stack.DropBadHeader)
		return stack.Consumed
	}
	id := binary.BigEndian.Uint32(b[4:8])
	s.mu.Lock()
	d := s.devs[id]
	s.mu.Unlock()
	if d == nil {
		c.Drop(stack.DropUnknownTunnel)
		return stack.Consumed
	}
	pkt.Data().Consume(ttHeaderLen)
	d.Deliver(pkt)
	return stack.Consumed
}

// ttConfig configures a TT device.
type ttConfig struct {
	ID     uint32
	Remote netip.AddrPort // the outer destination of every packet
	// Params is the template of every Xmit (TOS, TTL, DF, ...); Dst,
	// DstPort, SrcPort and Device are filled in.
	Params stack.XmitParams
	// Dev is the device configuration; EncapLen defaults to ttEncapLen and
	// Name to "tt<ID>".
	Dev stack.DeviceConfig
}

// ttDevice is a TT device: the framework's Device plus TT's transmit.
type ttDevice struct {
	*stack.Device
	s      *ttSocket
	id     uint32
	layer  stack.Layer
	remote netip.AddrPort
	params stack.XmitParams
	nic    atomic.Uint32 // the device's NIC, set once NewDevice returns
}

var _ stack.Transmitter = (*ttDevice)(nil)

// addDevice creates a TT device in st (the inner stack) sending through s.
func (s *ttSocket) addDevice(tb testing.TB, st *stack.Stack, cfg ttConfig) *ttDevice {
	tb.Helper()
	dc := cfg.Dev
	if dc.Name == "" {
		dc.Name = "tt" + strconv.Itoa(int(cfg.ID))
	}
	if dc.EncapLen == 0 {
		dc.EncapLen = ttEncapLen
	}
	d := &ttDevice{s: s, id: cfg.ID, layer: dc.Layer, remote: cfg.Remote, params: cfg.Params}
	dev, err := stack.NewDevice(st, dc, d)
	if err != nil {
		tb.Fatalf("NewDevice(%+v): %v", dc, err)
	}
	d.Device = dev
	d.nic.Store(uint32(dev.NIC()))
	s.mu.Lock()
	s.devs[cfg.ID] = d
	s.mu.Unlock()
	return d
}

// Transmit implements stack.Transmitter: push the TT header into the
// headroom and send the datagram to the remote.
func (d *ttDevice) Transmit(pkt *stack.PacketBuffer) error {
	out, h := stack.NewTunnelPacket(pkt, ttHeaderLen)
	h[0], h[1], h[2], h[3] = ttMagic, byte(d.layer), 0, 0
	binary.BigEndian.PutUint32(h[4:], d.id)
	p := d.params
	p.Dst, p.DstPort = d.remote.Addr(), d.remote.Port()
	p.SrcPort = stack.FlowSrcPort(pkt, 49152, 65535)
	p.Device = stack.NICID(d.nic.Load())
	return d.s.sock.Xmit(out, p)
}

// newStack returns a Stack closed when the test ends, after which no
// goroutine started since this call may remain.
func newStack(tb testing.TB) *stack.Stack {
	tb.Helper()
	ignore := goleak.IgnoreCurrent()
	tb.Cleanup(func() { goleak.VerifyNone(tb, ignore) })
	st := stack.New(stack.Options{})
	tb.Cleanup(st.Close)
	return st
}

// Addresses of the channel underlay (documentation prefixes; they exist
// only inside the test stacks).
var (
	local4  = netip.MustParseAddr("192.0.2.1")
	peer4   = netip.MustParseAddr("192.0.2.2")
	other4  = netip.MustParseAddr("192.0.2.3")
	router4 = netip.MustParseAddr("192.0.2.254")
	local6  = netip.MustParseAddr("2001:db8::1")
	peer6   = netip.MustParseAddr("2001:db8::2")
	other6  = netip.MustParseAddr("2001:db8::3")
	router6 = netip.MustParseAddr("2001:db8::fe")
)

// wireHost is a stack whose underlay NIC is a gVisor channel endpoint: the
// test writes the wire's inbound packets and reads its outbound ones.
type wireHost struct {
	st  *stack.Stack
	ep  *channel.Endpoint
	nic stack.NICID
}

// newWireHost returns a stack with a channel underlay of MTU mtu (0 = 1500)
// addressed local4/24 and local6/64.
func newWireHost(tb testing.TB, mtu uint32) *wireHost {
	tb.Helper()
	if mtu == 0 {
		mtu = 1500
	}
	st := newStack(tb)
	ep := channel.New(1024, mtu, "")
	nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
	if err != nil {
		tb.Fatalf("AddNIC: %v", err)
	}
	for _, p := range []netip.Prefix{netip.PrefixFrom(local4, 24), netip.PrefixFrom(local6, 64)} {
		if err := st.AddAddress(nic, p); err != nil {
			tb.Fatalf("AddAddress(%v): %v", p, err)
		}
	}
	return &wireHost{st: st, ep: ep, nic: nic}
}

// inject delivers the IP packet b on the underlay, as if from the wire.
func (h *wireHost) inject(b []byte) {
	proto := header.IPv4ProtocolNumber
	if b[0]>>4 == 6 {
		proto = header.IPv6ProtocolNumber
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), b...))})
	h.ep.InjectInbound(proto, pkt)
	pkt.DecRef()
}

// read returns the next packet the stack sent on the underlay.
func (h *wireHost) read(tb testing.TB) []byte {
	tb.Helper()
	b := h.tryRead(2 * time.Second)
	if b == nil {
		tb.Fatal("no packet on the wire")
	}
	return b
}

// tryRead returns the next packet sent on the underlay, or nil after wait.
func (h *wireHost) tryRead(wait time.Duration) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	pkt := h.ep.ReadContext(ctx)
	if pkt == nil {
		return nil
	}
	defer pkt.DecRef()
	v := pkt.ToView()
	defer v.Release()
	return append([]byte(nil), v.AsSlice()...)
}

// readUDP returns the next UDP datagram sent on the underlay, skipping
// anything else (NDP, ICMP).
func (h *wireHost) readUDP(tb testing.TB) []byte {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		b := h.tryRead(time.Until(deadline))
		if b == nil {
			break
		}
		if ipProto(b) == header.UDPProtocolNumber {
			return b
		}
	}
	tb.Fatal("no UDP datagram on the wire")
	return nil
}

// expectQuiet fails if the stack sends a UDP datagram on the underlay.
func (h *wireHost) expectQuiet(tb testing.TB) {
	tb.Helper()
	for {
		b := h.tryRead(20 * time.Millisecond)
		if b == nil {
			return
		}
		if ipProto(b) == header.UDPProtocolNumber {
			tb.Fatalf("unexpected UDP datagram on the wire: % x", b)
		}
	}
}

// ipProto returns the transport protocol of the IP packet b (the next
// header of the fixed IPv6 header).
func ipProto(b []byte) tcpip.TransportProtocolNumber {
	if len(b) >= header.IPv6MinimumSize && b[0]>>4 == 6 {
		return tcpip.TransportProtocolNumber(b[6])
	}
	if len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4 {
		return header.IPv4(b).TransportProtocol()
	}
	return 0
}

// csumMode says how udpPacket fills the UDP checksum.
type csumMode int

const (
	csumGood csumMode = iota
	csumZero
	csumBad
)

// udpPacket builds an IPv4 or IPv6 packet (by the family of src) carrying
// one UDP datagram.
func udpPacket(src, dst netip.AddrPort, payload []byte, mode csumMode) []byte {
	ulen := header.UDPMinimumSize + len(payload)
	srcA, dstA := tcpip.AddrFromSlice(src.Addr().AsSlice()), tcpip.AddrFromSlice(dst.Addr().AsSlice())
	var b []byte
	var u header.UDP
	if src.Addr().Is4() {
		b = make([]byte, header.IPv4MinimumSize+ulen)
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			TTL:         64,
			Protocol:    uint8(header.UDPProtocolNumber),
			SrcAddr:     srcA,
			DstAddr:     dstA,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		u = header.UDP(b[header.IPv4MinimumSize:])
	} else {
		b = make([]byte, header.IPv6MinimumSize+ulen)
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(ulen),
			TransportProtocol: header.UDPProtocolNumber,
			HopLimit:          64,
			SrcAddr:           srcA,
			DstAddr:           dstA,
		})
		u = header.UDP(b[header.IPv6MinimumSize:])
	}
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(ulen)})
	copy(u.Payload(), payload)
	if mode != csumZero {
		xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcA, dstA, uint16(ulen))
		xsum = checksum.Checksum(payload, xsum)
		c := ^u.CalculateChecksum(xsum)
		if c == 0 {
			c = 0xffff
		}
		if mode == csumBad {
			c ^= 0x0101
		}
		u.SetChecksum(c)
	}
	return b
}

// outerUDP is an outer datagram read from the wire.
type outerUDP struct {
	v6             bool
	src, dst       netip.AddrPort
	ttl, tos       uint8
	df             bool
	flowLabel      uint32
	udpLen         uint16
	checksum       uint16
	checksumValid  bool
	payload        []byte // the UDP payload
	ipLen          int
	fragmentOffset uint16
	moreFragments  bool
}

// parseOuter parses an unfragmented IPv4 or IPv6 UDP packet.
func parseOuter(tb testing.TB, b []byte) outerUDP {
	tb.Helper()
	var o outerUDP
	var u header.UDP
	var src, dst tcpip.Address
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
			tb.Fatalf("not an IPv4 UDP packet: % x", b)
		}
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
		o.ttl = ip.TTL()
		o.tos, _ = ip.TOS()
		o.df = ip.Flags()&header.IPv4FlagDontFragment != 0
		o.fragmentOffset, o.moreFragments = ip.FragmentOffset(), ip.More()
		u = header.UDP(ip.Payload())
	case 6:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
			tb.Fatalf("not an IPv6 UDP packet: % x", b)
		}
		o.v6 = true
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
		o.ttl = ip.HopLimit()
		o.tos, o.flowLabel = ip.TOS()
		u = header.UDP(ip.Payload())
	default:
		tb.Fatalf("not an IP packet: % x", b)
	}
	if len(u) < header.UDPMinimumSize || int(u.Length()) != len(u) {
		tb.Fatalf("UDP length %d, datagram %d bytes", u.Length(), len(u))
	}
	o.ipLen = len(b)
	o.src = netip.AddrPortFrom(addrOf(src), u.SourcePort())
	o.dst = netip.AddrPortFrom(addrOf(dst), u.DestinationPort())
	o.udpLen = u.Length()
	o.checksum = u.Checksum()
	o.payload = append([]byte(nil), u.Payload()...)
	o.checksumValid = u.IsChecksumValid(src, dst, checksum.Checksum(u.Payload(), 0))
	return o
}

// addrOf converts a gVisor address.
func addrOf(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}

// innerPacket returns a packet holding data with headroom bytes reserved,
// as a tunnel device's Transmit gets it (the caller DecRefs it).
func innerPacket(data []byte, headroom int) *stack.PacketBuffer {
	return gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: headroom,
		Payload:            buffer.MakeWithData(append([]byte(nil), data...)),
	})
}

// pattern returns n bytes of a recognisable pattern.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// peerHost is one end of a two-stack TT topology over memlink.
type peerHost struct {
	st    *stack.Stack
	outer netip.Addr
	tt    *ttSocket
	dev   *ttDevice
	inner [2]netip.Addr // IPv4 and IPv6 inner addresses
}

// newPeerPair builds two stacks joined by a memlink pair (outer IPv4 or
// IPv6), each with a TT socket and one device of layer l pointing at the
// other, addressed 10.42.0.{1,2}/24 and fd42::{1,2}/64 inside; dev, when not nil, adjusts each device's configuration.
func newPeerPair(tb testing.TB, opts memlink.Options, outer6 bool, l stack.Layer, dev func(*stack.DeviceConfig)) [2]*peerHost {
	tb.Helper()
	a, b, err := memlink.NewPair(opts)
	if err != nil {
		tb.Fatalf("NewPair: %v", err)
	}
	outer := [2]netip.Prefix{netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("198.18.0.2/24")}
	if outer6 {
		outer = [2]netip.Prefix{netip.MustParsePrefix("fd00::1/64"), netip.MustParsePrefix("fd00::2/64")}
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = memlink.DefaultMTU
	}
	var hs [2]*peerHost
	for i, ep := range []*memlink.Endpoint{a, b} {
		st := newStack(tb)
		nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
		if err != nil {
			tb.Fatalf("AddNIC: %v", err)
		}
		if err := st.AddAddress(nic, outer[i]); err != nil {
			tb.Fatalf("AddAddress: %v", err)
		}
		tt := openTT(tb, st, stack.SocketConfig{})
		dc := stack.DeviceConfig{Layer: l, UnderlayMTU: mtu, OuterIPv6: outer6}
		if dev != nil {
			dev(&dc)
		}
		d := tt.addDevice(tb, st, ttConfig{
			ID:     42,
			Remote: netip.AddrPortFrom(outer[1-i].Addr(), ttPort),
			Dev:    dc,
		})
		h := &peerHost{st: st, outer: outer[i].Addr(), tt: tt, dev: d}
		for j, p := range []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, 0, byte(i + 1)}), 24),
			netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x42, 15: byte(i + 1)}), 64),
		} {
			if err := st.AddAddress(d.NIC(), p); err != nil {
				tb.Fatalf("AddAddress(%v): %v", p, err)
			}
			h.inner[j] = p.Addr()
		}
		hs[i] = h
	}
	return hs
}

// recorder is an Encap that records what it receives and returns verdict.
type recorder struct {
	verdict stack.Verdict
	consume int // bytes of data to consume before returning verdict

	mu   sync.Mutex
	got  []received
	errs []stack.ICMPError
	// closed counts CloseEncap calls.
	closed int
}

type received struct {
	payload  []byte
	src, dst netip.AddrPort
	depth    int
}

var (
	_ stack.Encap         = (*recorder)(nil)
	_ stack.ErrorReceiver = (*recorder)(nil)
	_ stack.EncapCloser   = (*recorder)(nil)
)

func (r *recorder) Receive(pkt *stack.PacketBuffer, src, dst netip.AddrPort) stack.Verdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, received{
		payload: pkt.Data().AsRange().ToSlice(),
		src:     src,
		dst:     dst,
		depth:   stack.NestingDepth(pkt),
	})
	if r.consume > 0 {
		pkt.Data().Consume(r.consume)
	}
	return r.verdict
}

func (r *recorder) ReceiveError(e stack.ICMPError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, e)
}

func (r *recorder) CloseEncap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
}

func (r *recorder) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *recorder) icmpErrors() []stack.ICMPError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stack.ICMPError(nil), r.errs...)
}

func (r *recorder) closeCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// dropsExcept returns the drop counters of s other than the reasons
// listed, for checking that nothing else was dropped.
func dropsExcept(s stack.Stats, except ...stack.DropReason) map[string]uint64 {
	m := map[string]uint64{}
outer:
	for _, r := range stack.DropReasons() {
		for _, e := range except {
			if r == e {
				continue outer
			}
		}
		if n := s.Dropped(r); n != 0 {
			m[r.String()] = n
		}
	}
	return m
}
