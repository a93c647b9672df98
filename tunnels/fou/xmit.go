package fou

// The transmit path (ipip_tunnel_xmit / ip6_tnl_xmit / ipgre_xmit with
// fou_build_header or gue_build_header): an inner IP packet written to the
// device -> [GRE header] -> [GUE header] pushed into the headroom ->
// stack.Socket.Xmit (UDP with a flow-hashed source port, outer IP).

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/stack"
)

// EtherTypes of GRE's protocol type field.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// Kernel default of udp_flow_src_port's range (ip_local_port_range).
const srcPortMin, srcPortMax = 32768, 61000

// errFamily is the error of an inner packet the device does not carry
// (IPv6 into an IPIP device, IPv4 into an IPv6 one); counted as
// DropNotForUs, the reason stack.DropReasonOf gives stack.ErrUnsupported.
var errFamily = fmt.Errorf("fou: inner protocol not carried by this device: %w", stack.ErrUnsupported)

// transmitter is the Device's stack.Transmitter face.
type transmitter Device

func tcpipProto(p Proto) tcpip.TransportProtocolNumber { return tcpip.TransportProtocolNumber(p) }

// Transmit implements stack.Transmitter: the device's ndo_start_xmit.
func (t *transmitter) Transmit(pkt *stack.PacketBuffer) error {
	d := (*Device)(t)
	var inner Proto
	var etherType uint16
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		inner, etherType = ProtoIPIP, etherTypeIPv4
	case header.IPv6ProtocolNumber:
		inner, etherType = ProtoIPv6, etherTypeIPv6
	default:
		return errFamily
	}
	wire := inner
	switch d.cfg.Proto {
	case ProtoIPIP, ProtoIPv6:
		if inner != d.cfg.Proto {
			return errFamily
		}
	case ProtoGRE:
		wire = ProtoGRE
	}
	gue := d.sock.cfg.Type == TypeGUE
	n := 0
	if gue {
		n = GUEHeaderLen
	}
	var gf GREFields
	if wire == ProtoGRE {
		gf = d.greFields(etherType)
		n += gf.Len()
	}
	out, hdr := stack.NewTunnelPacket(pkt, n)
	if gue {
		// draft-ietf-intarea-gue §3.1: variant 0, data message, no
		// extensions, Proto names the payload.
		GUE(hdr).Encode(&GUEFields{Proto: uint8(wire)})
		hdr = hdr[GUEHeaderLen:]
	}
	if wire == ProtoGRE {
		g := GRE(hdr)
		g.Encode(&gf)
		if gf.Checksum {
			// RFC 2784 §2.5: over the GRE header and the payload.
			g.SetChecksum(^checksum.Checksum(hdr[:gf.Len()], out.Data().Checksum()))
		}
	}
	sport := d.cfg.EncapSport
	if sport == 0 {
		sport = stack.FlowSrcPort(pkt, srcPortMin, srcPortMax)
	}
	return d.sock.sock.Xmit(out, stack.XmitParams{
		Src:        d.cfg.Local,
		Dst:        d.cfg.Remote,
		SrcPort:    sport,
		DstPort:    d.cfg.EncapDport,
		TOS:        d.cfg.TOS,
		TTL:        d.cfg.TTL,
		DF:         d.cfg.DF,
		NoChecksum: d.cfg.ZeroChecksum,
		Device:     stack.NICID(d.nic.Load()),
	})
}
