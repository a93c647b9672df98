package vxlan

import (
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

// AgeingTimerArmed reports whether d's ageing timer (vxlan_cleanup's) is
// pending. It stops the timer to find out and re-arms it on an open device,
// which may delay the next ageing scan by up to one interval; tests only.
func AgeingTimerArmed(d *Device) bool {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.ager == nil || !d.ager.Stop() {
		return false
	}
	if !d.closed {
		d.ager.Reset(ageInterval)
	}
	return true
}

// TransmitFrame hands frame, a whole Ethernet frame, to d's transmit path
// as the inner stack would: the Ethernet header as the link header and,
// for IPv4, IPv6 and ARP, the fixed part of the next header as the network
// header. Tests only.
func TransmitFrame(d *Device, frame []byte) error {
	const ethLen = header.EthernetMinimumSize
	nh := 0
	if len(frame) >= ethLen {
		switch tcpip.NetworkProtocolNumber(uint16(frame[12])<<8 | uint16(frame[13])) {
		case header.IPv4ProtocolNumber:
			nh = header.IPv4MinimumSize
		case header.IPv6ProtocolNumber:
			nh = header.IPv6MinimumSize
		case header.ARPProtocolNumber:
			nh = header.ARPSize
		}
	}
	l2 := min(len(frame), ethLen)
	nh = min(nh, len(frame)-l2)
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: l2 + nh + 8 + HeaderLen + stack.DefaultOuterHeadroom,
		Payload:            buffer.MakeWithData(frame[l2+nh:]),
	})
	defer pkt.DecRef()
	copy(pkt.NetworkHeader().Push(nh), frame[l2:l2+nh])
	copy(pkt.LinkHeader().Push(l2), frame[:l2])
	return (*transmitter)(d).Transmit(pkt)
}

// SetProxyDeliverHook makes every proxy worker call f before it delivers
// a reply (nil removes it). Tests only.
func SetProxyDeliverHook(f func()) {
	if f == nil {
		proxyDeliverHook.Store(nil)
		return
	}
	proxyDeliverHook.Store(&f)
}
