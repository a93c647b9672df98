package tunneltest

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

// Transmit returns a function that hands pkt to tx, as the inner stack
// does on every packet of a flow, and fails tb on an error: one
// encapsulation for a benchmark loop or testing.AllocsPerRun.
func Transmit(tb testing.TB, tx stack.Transmitter, pkt *stack.PacketBuffer) func() {
	return func() {
		if err := tx.Transmit(pkt); err != nil {
			tb.Fatal(err)
		}
	}
}

// Receive returns a function that hands a fresh received copy of wire
// (Received) to the tunnel socket's endpoint ep, as the UDP demux does,
// and frees it: one decapsulation for a benchmark loop or
// testing.AllocsPerRun.
func Receive(ep gstack.TransportEndpoint, wire []byte) func() {
	return func() {
		pkt := Received(wire)
		ep.HandlePacket(gstack.TransportEndpointID{}, pkt)
		pkt.DecRef()
	}
}

// Loop runs f b.N times, reporting allocations: the body of the tunnels'
// encap and decap benchmarks.
func Loop(b *testing.B, f func()) {
	b.ReportAllocs()
	for b.Loop() {
		f()
	}
}

// MaxFuzzPayload bounds the UDP payloads the decap fuzzers try: larger
// ones only cost time.
const MaxFuzzPayload = 9000

// AccountedOnce hands wire (a datagram to the void host, Datagram4) to
// the tunnel socket's endpoint ep and fails t unless accounted (the sum
// of every counter a received datagram can end up in) moved by exactly
// one: each datagram is delivered, dropped or passed on exactly once.
// state, if not nil, describes the counters for the message.
func AccountedOnce(t testing.TB, ep gstack.TransportEndpoint, wire []byte, accounted func() uint64, state func() string) {
	t.Helper()
	pkt := Received(wire)
	defer pkt.DecRef()
	before := accounted()
	ep.HandlePacket(gstack.TransportEndpointID{}, pkt)
	if got := accounted() - before; got != 1 {
		var s string
		if state != nil {
			s = " (" + state() + ")"
		}
		t.Fatalf("datagram of %d bytes accounted %d times%s", len(wire)-header.IPv4MinimumSize-header.UDPMinimumSize, got, s)
	}
}
