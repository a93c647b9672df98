package geneve

// The Geneve transmit path (geneve_xmit, geneve_xmit_skb, geneve_build_skb):
// an inner frame written to the device -> Geneve header and options pushed
// into the headroom -> stack.Socket.Xmit (UDP with a flow-hashed source
// port, outer IP).

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

// transmitter is the Device's stack.Transmitter face.
type transmitter Device

// Transmit implements stack.Transmitter: geneve_xmit with the device's
// configured remote and its current TxOptions.
// errNotIP is the error of an L3 device asked to carry anything but IPv4
// or IPv6; it is counted as DropNotForUs.
var errNotIP = fmt.Errorf("geneve: L3 device carries only IPv4 and IPv6: %w", stack.ErrUnsupported)

func (t *transmitter) Transmit(pkt *stack.PacketBuffer) error {
	d := (*Device)(t)
	if !d.cfg.Remote.IsValid() {
		return errNoRemote
	}
	return d.xmit(pkt, &Fields{Options: *d.txOpt.Load()}, d.params(pkt))
}

// params returns the outer header fields for pkt from the configuration
// (geneve_xmit_skb: TOS, TTL, DF, flow label, source port).
func (d *Device) params(pkt *stack.PacketBuffer) stack.XmitParams {
	p := stack.XmitParams{
		Src:        d.cfg.Local,
		Dst:        d.cfg.Remote,
		SrcPort:    stack.FlowSrcPort(pkt, d.cfg.SrcPortMin, d.cfg.SrcPortMax),
		DstPort:    d.cfg.Port,
		TOS:        d.cfg.TOS,
		TTL:        d.cfg.TTL,
		DF:         d.cfg.DF == DFSet,
		FlowLabel:  d.cfg.FlowLabel,
		NoChecksum: d.cfg.ZeroChecksum,
		Device:     stack.NICID(d.nic.Load()),
	}
	if d.cfg.TOSInherit {
		p.TOS = stack.InnerTOS(pkt)
	}
	if d.cfg.DF == DFInherit {
		p.DF = innerDF(pkt)
	}
	return p
}

// xmit encapsulates pkt with f (whose VNI and Protocol it fills in) and
// sends it with p. pkt is borrowed.
func (d *Device) xmit(pkt *stack.PacketBuffer, f *Fields, p stack.XmitParams) error {
	f.VNI = d.cfg.VNI
	f.Protocol = d.proto
	if d.cfg.InnerProtoInherit {
		// innerprotoinherit: the protocol type is the inner packet's.
		switch pkt.NetworkProtocolNumber {
		case header.IPv4ProtocolNumber:
			f.Protocol = ProtoIPv4
		case header.IPv6ProtocolNumber:
			f.Protocol = ProtoIPv6
		default:
			return errNotIP
		}
	}
	out, hdr := stack.NewTunnelPacket(pkt, HeaderLen+len(f.Options))
	Header(hdr).Encode(f)
	return d.sock.sock.Xmit(out, p)
}

// SendFrame sends one inner frame (Ethernet for an L2 device, an IP packet
// for L3) with per-packet metadata: md.Options (at most TxOptionsRoom
// bytes, well-formed), the O and C bits, and optionally the outer
// destination, TOS and TTL (zero fields take the device's). The device's
// TxOptions are not added. This is the transmit half of metadata mode, for
// OAM messages and applications that choose options per packet. frame is
// copied; a failure is also counted on the device.
func (d *Device) SendFrame(md Metadata, frame []byte) error {
	err := d.sendFrame(&md, frame)
	if err != nil {
		d.Counters().Drop(stack.DropReasonOf(err))
	}
	return err
}

func (d *Device) sendFrame(md *Metadata, frame []byte) error {
	if len(md.Options) > d.cfg.TxOptionsRoom || md.Options.Validate() != nil {
		return fmt.Errorf("geneve: options: %w: need whole options within TxOptionsRoom %d", stack.ErrInvalid, d.cfg.TxOptionsRoom)
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: 8 + HeaderLen + MaxOptionsLen + stack.DefaultOuterHeadroom,
		Payload:            buffer.MakeWithData(frame),
	})
	defer pkt.DecRef()
	var ipHdr []byte
	if d.cfg.InnerProtoInherit {
		ipHdr = frame
	} else {
		if len(frame) < header.EthernetMinimumSize {
			return fmt.Errorf("geneve: frame of %d bytes shorter than an Ethernet header: %w", len(frame), stack.ErrInvalid)
		}
		pkt.LinkHeader().Consume(header.EthernetMinimumSize)
		ipHdr = frame[header.EthernetMinimumSize:]
		switch header.Ethernet(frame).Type() {
		case header.IPv4ProtocolNumber, header.IPv6ProtocolNumber:
		default:
			ipHdr = nil
		}
	}
	if len(ipHdr) > 0 {
		switch ipHdr[0] >> 4 {
		case 4:
			pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
			if len(ipHdr) >= header.IPv4MinimumSize {
				pkt.NetworkHeader().Consume(int(header.IPv4(ipHdr).HeaderLength()))
			}
		case 6:
			pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
			if len(ipHdr) >= header.IPv6MinimumSize {
				pkt.NetworkHeader().Consume(header.IPv6MinimumSize)
			}
		}
	}
	p := d.params(pkt)
	if md.Dst.Addr().IsValid() {
		p.Dst = md.Dst.Addr()
		if md.Dst.Port() != 0 {
			p.DstPort = md.Dst.Port()
		}
	}
	if !p.Dst.IsValid() {
		return errNoRemote
	}
	if md.TOS != 0 {
		p.TOS = md.TOS
	}
	if md.TTL != 0 {
		p.TTL = md.TTL
	}
	err := d.xmit(pkt, &Fields{OAM: md.OAM, Critical: md.Critical, Options: md.Options}, p)
	if err == nil {
		d.Counters().Tx(len(frame))
	}
	return err
}

// innerDF is "df inherit": DF from an inner IPv4 header, always for inner
// IPv6 (which is never fragmented on the path), as geneve_xmit_skb does.
func innerDF(pkt *stack.PacketBuffer) bool {
	nh := pkt.NetworkHeader().Slice()
	switch {
	case pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber && len(nh) >= header.IPv4MinimumSize:
		return header.IPv4(nh).Flags()&header.IPv4FlagDontFragment != 0
	case pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber:
		return true
	}
	return false
}
