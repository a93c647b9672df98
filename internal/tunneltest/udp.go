package tunneltest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

// SendUDP sends payload as one datagram from st to dst, from an ephemeral
// port and the address the route picks.
func SendUDP(tb testing.TB, st *stack.Stack, dst netip.AddrPort, payload []byte) {
	tb.Helper()
	c, err := st.DialUDP(dst)
	if err != nil {
		tb.Fatalf("dial UDP %v: %v", dst, err)
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		tb.Fatalf("send UDP to %v: %v", dst, err)
	}
}

// SendUDPFrom sends payload as one datagram from src (an address of st),
// ephemeral port, to dst: a raw datagram to a tunnel socket from a chosen
// outer source.
func SendUDPFrom(tb testing.TB, st *stack.Stack, src netip.Addr, dst netip.AddrPort, payload []byte) {
	tb.Helper()
	pc, err := st.ListenUDP(netip.AddrPortFrom(src, 0))
	if err != nil {
		tb.Fatalf("listen UDP on %v: %v", src, err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo(payload, net.UDPAddrFromAddrPort(dst)); err != nil {
		tb.Fatalf("send UDP to %v: %v", dst, err)
	}
}
