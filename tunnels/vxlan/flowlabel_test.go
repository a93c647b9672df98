package vxlan_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// TestFlowLabel: a device's configured flow label and TOS appear in the
// outer IPv6 header of what it sends, and the datagram still carries a
// valid VXLAN header with the device's VNI.
func TestFlowLabel(t *testing.T) {
	h := newInjectHost(t, func(c *vxlan.Config) {
		c.Remotes = []netip.Addr{injectPeer6}
		c.FlowLabel = 0xabcde
		c.TOS = 0x28
	})
	peerIn := netip.MustParseAddr("192.168.42.1")
	addStaticNeighbor(t, h.st, h.dev.NIC(), peerIn, someMAC)
	tunneltest.SendUDP(t, h.st, netip.AddrPortFrom(peerIn, 9), []byte("labelled"))
	pkt := h.ep.Read()
	if pkt == nil {
		t.Fatal("the device sent nothing")
	}
	b := pkt.ToView().AsSlice()
	pkt.DecRef()
	ip := header.IPv6(b)
	if !ip.IsValid(len(b)) {
		t.Fatalf("not an IPv6 packet: % x", b[:min(len(b), 48)])
	}
	if got := binary.BigEndian.Uint32(b[:4]) & 0xfffff; got != 0xabcde {
		t.Errorf("flow label %#x, want 0xabcde", got)
	}
	if tc, _ := ip.TOS(); tc != 0x28 {
		t.Errorf("traffic class %#x, want 0x28", tc)
	}
	udp := header.UDP(ip.Payload())
	if udp.DestinationPort() != vxlan.DefaultPort {
		t.Errorf("UDP destination port %d, want %d", udp.DestinationPort(), vxlan.DefaultPort)
	}
	vh, err := vxlan.Parse(udp.Payload())
	if err != nil || vh.VNI() != 42 {
		t.Errorf("VXLAN header: %v, VNI %v; want VNI 42", err, vh.VNI())
	}
}
