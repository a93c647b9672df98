package stack

import "net/netip"

// PathMTU returns what an ICMP error tells a tunnel about its path MTU:
// for ICMPPacketTooBig with a non-zero MTU, the outer destination (IPv4
// unmapped) and the MTU, ok true; for any other error ok is false. The
// ErrorReceivers of tunnel sockets use it before updating the path MTU of
// their devices towards dst (Device.UpdatePathMTU).
func (ie ICMPError) PathMTU() (dst netip.Addr, mtu uint32, ok bool) {
	if ie.Kind != ICMPPacketTooBig || ie.MTU == 0 {
		return netip.Addr{}, 0, false
	}
	return ie.Dst.Addr().Unmap(), ie.MTU, true
}
