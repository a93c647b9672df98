package forward_test

import (
	"context"
	"hash"
	"hash/crc32"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/internal/forward"
)

// BenchmarkTCPHostToOverlay measures one TCP stream from a host socket
// through a forward into the overlay (CRC-32C instead of SHA-256, so that
// the hash does not bound the figure).
func BenchmarkTCPHostToOverlay(b *testing.B) {
	o, err := e2e.NewOverlay(e2e.OverlayConfig{GSO: true})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	target := netip.AddrPortFrom(o.B.Inner4, 5001)
	ln, err := o.B.Stack.ListenTCP(target)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	f, err := forward.Start(context.Background(), o.A.Stack, forward.Forward{Proto: forward.TCP, Direction: forward.HostToOverlay, Target: target})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	crc := func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }
	b.SetBytes(size)
	for b.Loop() {
		if _, err := e2e.Transfer(context.Background(), ln, func() (net.Conn, error) { return net.Dial("tcp", f.Addr().String()) }, size, crc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUDPRoundTrip measures a datagram's round trip from a host
// socket through a forward to an echo server in the overlay and back.
func BenchmarkUDPRoundTrip(b *testing.B) {
	o, err := e2e.NewOverlay(e2e.OverlayConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	target := netip.AddrPortFrom(o.B.Inner4, 7000)
	echo, err := o.B.Stack.ListenUDP(target)
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	go udpEcho(echo)
	f, err := forward.Start(context.Background(), o.A.Stack, forward.Forward{Proto: forward.UDP, Direction: forward.HostToOverlay, Target: target})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c, err := net.Dial("udp", f.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, 1200), make([]byte, 2048)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // a lost datagram fails, not hangs
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
