package vxlan

// The VXLAN transmit path (vxlan_xmit, vxlan_xmit_one): an inner Ethernet
// frame written to the device -> ARP/NDP look (proxy.go) -> FDB lookup -> for each remote: VXLAN
// header pushed into the headroom -> stack.Socket.Xmit (UDP, outer IP).

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/stack"
)

// transmitter is the Device's stack.Transmitter face.
type transmitter Device

// Transmit implements stack.Transmitter: vxlan_xmit.
func (t *transmitter) Transmit(pkt *stack.PacketBuffer) error {
	d := (*Device)(t)
	eth := pkt.LinkHeader().Slice()
	if len(eth) < header.EthernetMinimumSize {
		return stack.ErrInvalid
	}
	if typ, ok := isNeighborEtherType(eth); ok && (d.cfg.Proxy || d.proxy.hook.Load() != nil) {
		if d.neighborTransmit(pkt, typ) {
			return nil // answered by the proxy (arp_reduce, neigh_reduce)
		}
	}
	var dst MAC
	copy(dst[:], eth[:6])
	remotes, _ := d.fdb.Lookup(dst)
	if len(remotes) == 0 {
		return errNoFDB
	}
	p := stack.XmitParams{
		Src:        d.cfg.Local,
		SrcPort:    stack.FlowSrcPort(pkt, d.cfg.SrcPortMin, d.cfg.SrcPortMax),
		TOS:        d.cfg.TOS,
		TTL:        d.cfg.TTL,
		DF:         d.cfg.DF,
		FlowLabel:  d.cfg.FlowLabel,
		NoChecksum: d.cfg.ZeroChecksum,
		Device:     stack.NICID(d.nic.Load()),
	}
	if d.cfg.TOSInherit {
		p.TOS = stack.InnerTOS(pkt)
	}
	var err error
	for _, r := range remotes {
		out, hdr := stack.NewTunnelPacket(pkt, HeaderLen)
		vni := r.VNI
		if vni == 0 {
			vni = d.cfg.VNI
		}
		Header(hdr).Encode(&Fields{VNI: vni})
		p.Dst = r.Addr
		p.DstPort = r.Port
		if p.DstPort == 0 {
			p.DstPort = d.cfg.Port
		}
		// Replicate to every remote even if one fails; report the first
		// failure (vxlan_xmit counts each).
		if e := d.sock.sock.Xmit(out, p); e != nil && err == nil {
			err = e
		}
	}
	return err
}
