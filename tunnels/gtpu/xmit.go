package gtpu

// The GTP-U transmit path (gtp_dev_xmit, gtp_build_skb_ip4/ip6,
// gtp1_push_header): an inner IP packet written to the device -> session
// by UE address (inner destination on the GGSN side, inner source on the
// SGSN side) -> G-PDU header with the peer's TEID pushed into the headroom
// -> stack.Socket.Xmit (UDP, outer IP).

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/stack"
)

// transmitter is the Device's stack.Transmitter face.
type transmitter Device

var _ stack.Transmitter = (*transmitter)(nil)

var (
	// errNoSession: no session has the packet's UE address (the kernel's
	// "no PDP ctx found for this packet").
	errNoSession = fmt.Errorf("gtpu: no session for the UE address: %w", stack.ErrNoRemote)
	// errNotIP: the device carries IPv4 and IPv6 only.
	errNotIP = fmt.Errorf("gtpu: not an IP packet: %w", stack.ErrUnsupported)
	// errTooLong: the T-PDU does not fit the 16-bit Length field.
	errTooLong = fmt.Errorf("gtpu: packet longer than the Length field allows: %w", stack.ErrTooBig)
)

// Transmit implements stack.Transmitter: gtp_dev_xmit.
func (t *transmitter) Transmit(pkt *stack.PacketBuffer) error {
	d := (*Device)(t)
	ue, ok := ueAddr(pkt, d.cfg.Role == RoleSGSN)
	if !ok {
		return errNotIP
	}
	ss := (*d.byUE.Load())[ue]
	if ss == nil {
		return errNoSession
	}
	n := pkt.Size()
	if n > 0xffff {
		return errTooLong
	}
	p := stack.XmitParams{
		Src:        d.cfg.Local,
		Dst:        ss.Peer,
		DstPort:    d.cfg.Port,
		TOS:        d.cfg.TOS,
		TTL:        d.cfg.TTL,
		DF:         d.cfg.DF,
		NoChecksum: d.cfg.ZeroChecksum,
		Device:     stack.NICID(d.nic.Load()),
	}
	if !d.cfg.FixedSrcPort {
		p.SrcPort = stack.FlowSrcPort(pkt, d.cfg.SrcPortMin, d.cfg.SrcPortMax)
	}
	out, hdr := stack.NewTunnelPacket(pkt, HeaderLen)
	// TS 29.281 §5.1: a G-PDU needs no optional field; Length counts the
	// T-PDU alone.
	Header(hdr).Encode(&Fields{Type: GPDU, Length: uint16(n), TEID: ss.RemoteTEID})
	return d.sock.sock.Xmit(out, p)
}

// ueAddr returns the inner packet's destination (or its source, if src) as
// the session key.
func ueAddr(pkt *stack.PacketBuffer, src bool) (netip.Addr, bool) {
	nh := pkt.NetworkHeader().Slice()
	switch {
	case pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber && len(nh) >= header.IPv4MinimumSize:
		off := 16
		if src {
			off = 12
		}
		return netip.AddrFrom4([4]byte(nh[off : off+4])), true
	case pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber && len(nh) >= header.IPv6MinimumSize:
		off := 24
		if src {
			off = 8
		}
		return netip.AddrFrom16([16]byte(nh[off : off+16])), true
	}
	return netip.Addr{}, false
}
