package e2e

import (
	"fmt"
	"net/netip"
)

// Nested returns a TunnelFunc that runs inner's tunnel over outer's: outer
// builds a tunnel across the wire, its device gets a middle layer of
// addresses (10.98.0.x/24, or fd00:98::x/64 with an IPv6 underlay), and
// inner builds its tunnel with those addresses as its underlay. Every packet
// between the inner addresses is thus encapsulated twice, and on receive
// enters the stack three times: the kernel's stacked tunnel devices. The
// returned TunnelEnd is inner's, and outer's is appended to Host.Lower; the VXLAN fields of Host (Socket, Device)
// are those of whichever layer is VXLAN, the inner one if both are.
//
// The two layers must use different UDP ports (two protocols, or one
// protocol configured twice) and the inner TunnelFunc sees cfg with
// UnderlayMTU set to the outer device's MTU and VNI one higher than the
// outer's.
func Nested(outer, inner TunnelFunc) TunnelFunc {
	return func(h *Host, cfg OverlayConfig) (TunnelEnd, error) {
		oe, err := outer(h, cfg)
		if err != nil {
			return TunnelEnd{}, fmt.Errorf("outer tunnel: %w", err)
		}
		if oe.Device == nil {
			return TunnelEnd{}, fmt.Errorf("outer tunnel returned no device")
		}
		self, peer := middleAddr(h, cfg), middleAddr(h.Peer(), cfg)
		if err := h.Stack.AddAddress(oe.Device.NIC(), self); err != nil {
			return TunnelEnd{}, fmt.Errorf("middle address: %w", err)
		}
		// A view of both hosts whose underlay is the middle layer.
		hv, pv := *h, *h.Peer()
		hv.Outer, pv.Outer = self.Addr(), peer.Addr()
		hv.peer, pv.peer = &pv, &hv
		icfg := cfg
		icfg.UnderlayMTU = oe.Device.InnerMTU()
		icfg.VNI = cfg.VNI + 1
		ie, err := inner(&hv, icfg)
		if err != nil {
			return TunnelEnd{}, fmt.Errorf("inner tunnel: %w", err)
		}
		if hv.Socket != nil {
			h.Socket, h.Device = hv.Socket, hv.Device
		}
		h.Lower = append(hv.Lower, oe)
		return ie, nil
	}
}

// middleAddr is h's address on the middle layer of a Nested tunnel.
func middleAddr(h *Host, cfg OverlayConfig) netip.Prefix {
	i := 1
	if h.Name == "b" {
		i = 2
	}
	if cfg.IPv6Underlay {
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x98, 15: byte(i)}), 64)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 98, 0, byte(i)}), 24)
}
