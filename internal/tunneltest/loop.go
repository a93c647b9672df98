package tunneltest

import (
	"testing"

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
