package stack_test

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

func TestInnerTOS(t *testing.T) {
	v4 := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: header.IPv4MinimumSize})
	defer v4.DecRef()
	header.IPv4(v4.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{TOS: 0xb8, TTL: 64, TotalLength: header.IPv4MinimumSize})
	v4.NetworkProtocolNumber = header.IPv4ProtocolNumber
	v6 := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: header.IPv6MinimumSize})
	defer v6.DecRef()
	header.IPv6(v6.NetworkHeader().Push(header.IPv6MinimumSize)).Encode(&header.IPv6Fields{TrafficClass: 0x28, HopLimit: 64})
	v6.NetworkProtocolNumber = header.IPv6ProtocolNumber
	arp := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: 28})
	defer arp.DecRef()
	arp.NetworkHeader().Push(28)
	arp.NetworkProtocolNumber = tcpip.NetworkProtocolNumber(header.ARPProtocolNumber)
	for _, tc := range []struct {
		name string
		pkt  *stack.PacketBuffer
		want uint8
	}{{"ipv4", v4, 0xb8}, {"ipv6", v6, 0x28}, {"arp", arp, 0}} {
		if got := stack.InnerTOS(tc.pkt); got != tc.want {
			t.Errorf("%s: InnerTOS = %#x, want %#x", tc.name, got, tc.want)
		}
	}
}
