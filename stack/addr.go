package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The API speaks net/netip; gVisor speaks tcpip.Address. These conversions
// never allocate.

// tcpipAddr converts a to a tcpip.Address; the zero Addr gives the empty
// tcpip.Address ("any").
func tcpipAddr(a netip.Addr) tcpip.Address {
	switch {
	case a.Is4():
		return tcpip.AddrFrom4(a.As4())
	case a.Is4In6():
		return tcpip.AddrFrom4(a.Unmap().As4())
	case a.Is6():
		return tcpip.AddrFrom16(a.As16())
	}
	return tcpip.Address{}
}

// netipAddr converts a tcpip.Address to a netip.Addr.
func netipAddr(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16())
	}
	return netip.Addr{}
}

// netProto returns the network protocol of a (IPv4 for 4-in-6 addresses).
func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() || a.Is4In6() {
		return header.IPv4ProtocolNumber
	}
	return header.IPv6ProtocolNumber
}

func fullAddr(ap netip.AddrPort, nic tcpip.NICID) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nic, Addr: tcpipAddr(ap.Addr()), Port: ap.Port()}
}

func subnet(p netip.Prefix) (tcpip.Subnet, error) {
	if p.Addr().Is4In6() {
		// An IPv4-mapped prefix is an IPv4 prefix: ::ffff:10.0.0.0/104
		// is 10.0.0.0/8.
		if p.Bits() < 96 {
			return tcpip.Subnet{}, fmt.Errorf("prefix %v: %w: an IPv4-mapped prefix needs at least 96 bits", p, ErrInvalid)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	a := tcpipAddr(p.Addr())
	if p.Bits() < 0 || p.Bits() > 8*a.Len() {
		return tcpip.Subnet{}, fmt.Errorf("prefix %v: %w", p, ErrInvalid)
	}
	mask := make([]byte, a.Len())
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return tcpip.NewSubnet(a, tcpip.MaskFromBytes(mask))
}
