package memlink_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/refs"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// TestMain turns on gVisor's reference leak checker, so that a PacketBuffer
// memlink creates and never releases (or releases twice) fails the run.
func TestMain(m *testing.M) {
	refs.SetLeakMode(refs.LeaksPanic)
	code := m.Run()
	refs.DoLeakCheck()
	os.Exit(code)
}

const nicID = 1

// host is a gVisor stack with one NIC, addressed 10.0.0.id/24 and fd00::id/64.
type host struct {
	s      *stack.Stack
	v4, v6 tcpip.Address
}

// addr returns h's address for proto.
func (h *host) addr(proto tcpip.NetworkProtocolNumber) tcpip.Address {
	if proto == ipv6.ProtocolNumber {
		return h.v6
	}
	return h.v4
}

// newHost returns a stack with IPv4, IPv6, ARP, UDP, TCP and ICMP on ep. It
// is destroyed when the test ends, after the cleanups registered later.
func newHost(tb testing.TB, ep stack.LinkEndpoint, id byte) *host {
	tb.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol, tcp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	tb.Cleanup(s.Destroy)
	if err := s.CreateNIC(nicID, ep); err != nil {
		tb.Fatalf("CreateNIC: %s", err)
	}
	h := &host{
		s:  s,
		v4: tcpip.AddrFrom4([4]byte{10, 0, 0, id}),
		v6: tcpip.AddrFrom16([16]byte{0: 0xfd, 15: id}),
	}
	for _, pa := range []tcpip.ProtocolAddress{
		{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: h.v4, PrefixLen: 24}},
		{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: h.v6, PrefixLen: 64}},
	} {
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			tb.Fatalf("AddProtocolAddress(%s): %s", pa.AddressWithPrefix, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return h
}

// wrap returns ep as a stack sees it: behind ethernet.New if eth is set.
func wrap(ep *memlink.Endpoint, eth bool) stack.LinkEndpoint {
	if eth {
		return ethernet.New(ep)
	}
	return ep
}

// pairedHosts returns hosts 1 and 2 joined by a pair made from opts. The
// endpoints are closed before the stacks are destroyed.
func pairedHosts(tb testing.TB, opts memlink.Options) (a, b *host, ea, eb *memlink.Endpoint) {
	tb.Helper()
	ea, eb, err := memlink.NewPair(opts)
	if err != nil {
		tb.Fatalf("NewPair: %v", err)
	}
	a = newHost(tb, wrap(ea, opts.Ethernet), 1)
	b = newHost(tb, wrap(eb, opts.Ethernet), 2)
	tb.Cleanup(func() {
		ea.Close()
		eb.Close()
	})
	return a, b, ea, eb
}

// udpSocket returns a UDP socket on h bound to addr:port (addr may be empty),
// with a receive buffer large enough that tests never lose datagrams in it.
func udpSocket(tb testing.TB, h *host, proto tcpip.NetworkProtocolNumber, addr tcpip.Address, port uint16) *gonet.UDPConn {
	tb.Helper()
	var wq waiter.Queue
	ep, err := h.s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if err != nil {
		tb.Fatalf("NewEndpoint: %s", err)
	}
	ep.SocketOptions().SetReceiveBufferSize(32<<20, true /* notify */)
	ep.SocketOptions().SetBroadcast(true)
	if err := ep.Bind(tcpip.FullAddress{Addr: addr, Port: port}); err != nil {
		ep.Close()
		tb.Fatalf("Bind(%s:%d): %s", addr, port, err)
	}
	c := gonet.NewUDPConn(&wq, ep)
	tb.Cleanup(func() { c.Close() })
	return c
}

// udpAddr returns addr:port as a net.UDPAddr.
func udpAddr(addr tcpip.Address, port uint16) *net.UDPAddr {
	return &net.UDPAddr{IP: net.IP(addr.AsSlice()), Port: int(port)}
}

// sendSeqs sends n datagrams of size bytes (at least 12) from c to to. Each
// carries its sequence number, from first on, and its send time.
func sendSeqs(tb testing.TB, c *gonet.UDPConn, to *net.UDPAddr, first, n, size int) {
	tb.Helper()
	buf := make([]byte, max(size, 12))
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(first+i))
		binary.BigEndian.PutUint64(buf[4:], uint64(time.Now().UnixNano()))
		if _, err := c.WriteTo(buf, to); err != nil {
			tb.Fatalf("WriteTo(%s) datagram %d: %v", to, first+i, err)
		}
	}
}

// datagram is what receiveSeqs saw of one datagram.
type datagram struct {
	seq     uint32
	latency time.Duration
}

// receiveSeqs reads datagrams sent by sendSeqs from c until want have come
// (want > 0) or none has come for quiet.
func receiveSeqs(c *gonet.UDPConn, want int, quiet time.Duration) []datagram {
	buf := make([]byte, 1<<16)
	var got []datagram
	for want <= 0 || len(got) < want {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, _, err := c.ReadFrom(buf)
		if err != nil || n < 12 {
			break
		}
		if binary.BigEndian.Uint32(buf) == warmUpSeq {
			continue
		}
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(buf[4:])))
		got = append(got, datagram{seq: binary.BigEndian.Uint32(buf), latency: time.Since(sent)})
	}
	return got
}

// seqs returns the sequence numbers of ds in arrival order.
func seqs(ds []datagram) []uint32 {
	s := make([]uint32, len(ds))
	for i, d := range ds {
		s[i] = d.seq
	}
	return s
}

// warmUpSeq numbers the datagrams of warmUp, which receiveSeqs skips.
const warmUpSeq = 1 << 31

// warmUp sends datagrams from c to to until rx receives one, so that link
// address resolution is done before a test counts datagrams.
func warmUp(tb testing.TB, c *gonet.UDPConn, to *net.UDPAddr, rx *gonet.UDPConn) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		sendSeqs(tb, c, to, warmUpSeq, 1, 12)
		rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := rx.ReadFrom(make([]byte, 1<<16)); err == nil {
			return
		}
	}
	tb.Fatalf("no datagram reached %s", to)
}

// transferTCP sends size pseudo-random bytes from a to b over TCP and fails
// the test unless b receives exactly them.
func transferTCP(tb testing.TB, a, b *host, proto tcpip.NetworkProtocolNumber, size int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deadline, _ := ctx.Deadline()
	dst := tcpip.FullAddress{Addr: b.addr(proto), Port: 8080}
	ln, err := gonet.ListenTCP(b.s, dst, proto)
	if err != nil {
		tb.Fatalf("ListenTCP: %v", err)
	}
	defer ln.Close()

	type result struct {
		sum [sha256.Size]byte
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		h := sha256.New()
		n, err := io.Copy(h, c)
		done <- result{sum: [sha256.Size]byte(h.Sum(nil)), n: n, err: err}
	}()

	data := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(data)
	c, err := gonet.DialContextTCP(ctx, a.s, dst, proto)
	if err != nil {
		tb.Fatalf("DialContextTCP(%s): %v", dst.Addr, err)
	}
	c.SetDeadline(deadline)
	if _, err := c.Write(data); err != nil {
		tb.Fatalf("Write: %v", err)
	}
	if err := c.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
	r := <-done
	if r.err != nil {
		tb.Fatalf("receiving side: %v", r.err)
	}
	if want := sha256.Sum256(data); r.n != int64(size) || r.sum != want {
		tb.Fatalf("received %d bytes with sha256 %x, want %d bytes with sha256 %x", r.n, r.sum, size, want)
	}
}

// neighbor returns the link address h resolved for addr, if any.
func neighbor(h *host, proto tcpip.NetworkProtocolNumber, addr tcpip.Address) tcpip.LinkAddress {
	entries, err := h.s.Neighbors(nicID, proto)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if e.Addr == addr {
			return e.LinkAddr
		}
	}
	return ""
}

// recorder is a NetworkDispatcher that keeps a copy of every packet
// delivered to it.
type recorder struct {
	mu   sync.Mutex
	pkts []recorded
	// onDeliver, if set, runs on each delivered packet after it is recorded.
	onDeliver func(*stack.PacketBuffer)
}

// recorded is what a recorder saw of one packet.
type recorded struct {
	proto     tcpip.NetworkProtocolNumber
	data      []byte
	validated bool
}

var _ stack.NetworkDispatcher = (*recorder)(nil)

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (r *recorder) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	rec := recorded{proto: proto, data: slices.Clone(v.AsSlice()), validated: pkt.RXChecksumValidated}
	v.Release()
	r.mu.Lock()
	r.pkts = append(r.pkts, rec)
	r.mu.Unlock()
	if r.onDeliver != nil {
		r.onDeliver(pkt)
	}
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (*recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// packets returns the packets recorded so far.
func (r *recorder) packets() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pkts)
}

// waitFor waits up to a few seconds for r to have recorded n packets.
func (r *recorder) waitFor(tb testing.TB, n int) []recorded {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		got := r.packets()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

// write writes one packet holding payload, behind a pushed link header
// linkHdr if not empty, to ep, and releases it as a stack would.
func write(ep stack.LinkEndpoint, proto tcpip.NetworkProtocolNumber, linkHdr, payload []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: len(linkHdr),
		Payload:            buffer.MakeWithData(slices.Clone(payload)),
	})
	if len(linkHdr) > 0 {
		copy(pkt.LinkHeader().Push(len(linkHdr)), linkHdr)
	}
	pkt.NetworkProtocolNumber = proto
	var pkts stack.PacketBufferList
	pkts.PushBack(pkt)
	ep.WritePackets(pkts)
	pkt.DecRef()
}

// pattern returns n bytes that differ from their neighbours.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}
