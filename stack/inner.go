package stack

import "gvisor.dev/gvisor/pkg/tcpip/header"

// InnerTOS returns the TOS (IPv4) or traffic class (IPv6) of an outbound
// inner packet's network header, 0 for anything else: what a device with
// "tos inherit" copies to the outer header.
func InnerTOS(pkt *PacketBuffer) uint8 {
	nh := pkt.NetworkHeader().Slice()
	switch {
	case pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber && len(nh) >= header.IPv4MinimumSize:
		tos, _ := header.IPv4(nh).TOS()
		return tos
	case pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber && len(nh) >= header.IPv6MinimumSize:
		tc, _ := header.IPv6(nh).TOS()
		return tc
	}
	return 0
}
