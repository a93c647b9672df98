package fou_test

import (
	"net"
	"net/netip"
)

func netAddr(a netip.AddrPort) net.Addr { return net.UDPAddrFromAddrPort(a) }
