package bareudp

// The bareudp transmit path (bareudp_xmit, bareudp_xmit_skb): an inner IP
// packet written to the device -> payload type checked against the device
// (IP modes) or the label stack chosen and pushed into the headroom (MPLS,
// the push of net/mpls/mpls_iptunnel.c mpls_xmit) -> flow-hashed source
// port (udp_flow_src_port) -> stack.Socket.Xmit (UDP, outer IP).

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/stack"
)

// transmitter is the Device's stack.Transmitter face.
type transmitter Device

var _ stack.Transmitter = (*transmitter)(nil)

// Errors of Transmit, counted on the device by stack.DropReasonOf.
var (
	// errWrongFamily: the inner packet is not what the device carries
	// (IPv6 on an IPv4 device without Multiproto); bareudp_xmit drops it.
	// It wraps stack.ErrUnsupported, counted as DropNotForUs.
	errWrongFamily = fmt.Errorf("bareudp: inner packet of a family the device does not carry: %w", stack.ErrUnsupported)
	// errNoLabel: an MPLS device has neither a route nor default labels
	// for the inner destination, so there is no LSP to send it on.
	errNoLabel = fmt.Errorf("bareudp: no MPLS label stack for destination: %w", stack.ErrNoRemote)
)

// Transmit implements stack.Transmitter: bareudp_xmit.
func (t *transmitter) Transmit(pkt *stack.PacketBuffer) error {
	d := (*Device)(t)
	out, err := d.encapsulate(pkt)
	if err != nil {
		return err
	}
	return d.sock.sock.Xmit(out, d.xmitParams(pkt))
}

// encapsulate returns the outer packet for pkt with its tunnel header (the
// label stack, or nothing) written and room for the UDP header: everything
// bareudp does before udp_tunnel_xmit_skb. The caller owns the result.
func (d *Device) encapsulate(pkt *stack.PacketBuffer) (*stack.PacketBuffer, error) {
	proto := pkt.NetworkProtocolNumber
	nh := pkt.NetworkHeader().Slice()
	var labels []Label
	switch {
	case d.mpls:
		// mpls_xmit: the label stack of the route to the inner
		// destination, TTL from the inner header (uniform model).
		var dst netip.Addr
		var ttl uint8
		switch {
		case proto == header.IPv4ProtocolNumber && len(nh) >= header.IPv4MinimumSize:
			dst = netip.AddrFrom4([4]byte(nh[16:20]))
			ttl = header.IPv4(nh).TTL()
		case proto == header.IPv6ProtocolNumber && len(nh) >= header.IPv6MinimumSize:
			dst = netip.AddrFrom16([16]byte(nh[24:40]))
			ttl = header.IPv6(nh).HopLimit()
		default:
			return nil, errWrongFamily
		}
		if labels = d.LabelsFor(dst); len(labels) == 0 {
			return nil, errNoLabel
		}
		if d.cfg.LabelTTL != 0 {
			ttl = d.cfg.LabelTTL // RFC 3443 pipe/short-pipe model
		}
		out, hdr := stack.NewTunnelPacket(pkt, len(labels)*EntryLen)
		LabelStack(hdr).Encode(labels, 0, ttl)
		return out, nil
	case proto == header.IPv4ProtocolNumber && d.cfg.EtherType == EtherTypeIPv4,
		proto == header.IPv6ProtocolNumber && (d.cfg.EtherType == EtherTypeIPv6 || d.cfg.Multiproto):
	default:
		return nil, errWrongFamily
	}
	// IP-in-UDP: no tunnel header at all, the payload is the packet.
	out, _ := stack.NewTunnelPacket(pkt, 0)
	return out, nil
}

// xmitParams returns the outer header fields for pkt.
func (d *Device) xmitParams(pkt *stack.PacketBuffer) stack.XmitParams {
	return stack.XmitParams{
		Src:        d.cfg.Local,
		Dst:        d.cfg.Remote,
		SrcPort:    stack.FlowSrcPort(pkt, d.cfg.SrcPortMin, 65535),
		DstPort:    d.cfg.Port,
		TOS:        d.cfg.TOS,
		TTL:        d.cfg.TTL,
		DF:         d.cfg.DF,
		NoChecksum: d.cfg.ZeroChecksum,
		Device:     stack.NICID(d.nic.Load()),
	}
}
