package main

// The underlay of a run: host UDP sockets (hostudp, the rootless default)
// or a host TUN device (tun, which needs CAP_NET_ADMIN), optionally
// captured to a pcap file, and the inner capture of the tunnel devices.

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/udptunnel/udptunnel/endpoints/capture"
	"github.com/udptunnel/udptunnel/endpoints/hostudp"
	"github.com/udptunnel/udptunnel/endpoints/tun"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// defaultPorts are the protocols' UDP ports, as their packages default.
var defaultPorts = map[string]uint16{
	"vxlan": 4789, "geneve": 6081, "l2tp": 1701, "gtpu": 2152, "gue": 6080, "bareudp": 6635, "mplsudp": 6635,
}

// port returns the UDP port interface ic uses.
// vxlanInnerOffset is what lies between the outer UDP header and the inner
// IP header of a VXLAN datagram: the VXLAN header and the inner Ethernet
// header (hostudp.Config.InnerOffset).
const vxlanInnerOffset = vxlan.HeaderLen + header.EthernetMinimumSize

func (ic *InterfaceConfig) port() uint16 {
	if ic.Port != 0 {
		return ic.Port
	}
	if ic.Type == "fou" {
		if ic.FOU != nil && (ic.FOU.Proto == "ipip" || ic.FOU.Proto == "ipv6") {
			return 5555
		}
		return 4754
	}
	return defaultPorts[ic.Type]
}

// hostUnderlay returns the underlay cfg asks for. What it opens is closed
// by the functions it appends to closers; the counters of a hostudp
// underlay are appended to metrics when it is built.
func hostUnderlay(cfg *Config, log *slog.Logger, closers *[]func() error, metrics *[]extraMetric) (underlayFunc, error) {
	u := cfg.Underlay
	mtu := u.MTU
	if mtu == 0 {
		mtu = 1500
	}
	var outer *os.File
	if cfg.Pcap.Outer != "" {
		f, err := os.Create(cfg.Pcap.Outer)
		if err != nil {
			return nil, fmt.Errorf("pcap.outer: %w", err)
		}
		*closers = append(*closers, f.Close)
		outer = f
	}
	wrap := func(ep stack.LinkEndpoint) (stack.LinkEndpoint, error) {
		if outer == nil {
			return ep, nil
		}
		return capture.New(ep, outer, capture.Options{LinkType: capture.LinkRaw})
	}
	switch u.Type {
	case "tun":
		return func(st *stack.Stack) (stack.NICID, netip.Addr, error) {
			p := netip.MustParsePrefix(u.Address)
			name := u.Name
			if name == "" {
				name = "udptunnel0"
			}
			dev, err := tun.Open(tun.Config{Name: name, MTU: mtu})
			if err != nil {
				return 0, netip.Addr{}, err
			}
			// Removing the NIC (when the stack closes) stops the
			// endpoint; the device itself goes after.
			*closers = append(*closers, dev.Close)
			ep, err := wrap(dev.LinkEndpoint())
			if err != nil {
				return 0, netip.Addr{}, err
			}
			nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
			if err != nil {
				return 0, netip.Addr{}, err
			}
			if err := st.AddAddress(nic, p); err != nil {
				return 0, netip.Addr{}, err
			}
			if gw := addr(u.Gateway); gw.IsValid() {
				// Remotes outside the TUN's prefix go through the gateway.
				if err := st.AddRoute(netip.PrefixFrom(gw, 0).Masked(), gw, nic); err != nil {
					return 0, netip.Addr{}, err
				}
			}
			log.Info("underlay up", "type", "tun", "name", name, "address", p, "mtu", mtu)
			return nic, p.Addr(), nil
		}, nil
	case "", "hostudp":
		local := addr(u.Address)
		if !local.IsValid() {
			var err error
			if local, err = routeSource(cfg); err != nil {
				return nil, fmt.Errorf("underlay.address: %w; set it", err)
			}
		}
		bind := addr(u.Bind)
		if !bind.IsValid() {
			bind = local
		}
		var ports []uint16
		for i := range cfg.Interfaces {
			if p := cfg.Interfaces[i].port(); !slices.Contains(ports, p) {
				ports = append(ports, p)
			}
		}
		return func(st *stack.Stack) (stack.NICID, netip.Addr, error) {
			hc := hostudp.Config{Addrs: []netip.Addr{local}, Bind: []netip.Addr{bind}, Ports: ports, MTU: mtu}
			if u.Offload {
				hc.InnerOffset, hc.InnerEthernet = vxlanInnerOffset, true
			}
			ep, err := hostudp.New(hc)
			if err != nil {
				return 0, netip.Addr{}, err
			}
			lep, err := wrap(ep)
			if err != nil {
				ep.Close()
				return 0, netip.Addr{}, err
			}
			*closers = append(*closers, func() error { ep.Close(); return nil })
			*metrics = append(*metrics, hostUDPMetrics(ep)...)
			nic, err := st.AddNIC(lep, stack.NICOptions{Name: "underlay"})
			if err != nil {
				return 0, netip.Addr{}, err
			}
			if err := st.AddAddress(nic, netip.PrefixFrom(local, local.BitLen())); err != nil {
				return 0, netip.Addr{}, err
			}
			// Every remote is reached through the host: a default route.
			if err := st.AddRoute(netip.PrefixFrom(local, 0).Masked(), netip.Addr{}, nic); err != nil {
				return 0, netip.Addr{}, err
			}
			log.Info("underlay up", "type", "hostudp", "address", local, "bind", bind, "ports", ports, "sockets", ep.LocalAddrs(), "offload", u.Offload)
			return nic, local, nil
		}, nil
	}
	return nil, fmt.Errorf("underlay.type %q", u.Type)
}

// routeSource returns the host address the kernel would send from to the
// first interface's remote: the underlay address when none is configured.
func routeSource(cfg *Config) (netip.Addr, error) {
	var remote netip.AddrPort
	switch {
	case len(cfg.Interfaces) > 0 && cfg.Interfaces[0].Remote != "":
		remote = netip.AddrPortFrom(addr(cfg.Interfaces[0].Remote), cfg.Interfaces[0].port())
	case cfg.EVPN != nil && len(cfg.EVPN.Neighbors) > 0:
		// With EVPN the remotes come from BGP: the first BGP peer is
		// reached through the underlay too.
		remote = netip.AddrPortFrom(addr(cfg.EVPN.Neighbors[0].Address), 179)
	default:
		return netip.Addr{}, fmt.Errorf("no remote to find the route to")
	}
	// A connected UDP socket sends nothing; it only asks the kernel for
	// the route's source address.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(remote))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %v: %w", remote.Addr(), err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// innerTUN opens the host TUN device t describes as a NIC of n's stack and
// turns on IP forwarding on it and on the tunnel interfaces (not on the
// underlay), so that what the host routes into the TUN goes on into the
// overlay (and back). Overlay hosts need a route
// back to the host's side of the TUN, as with any router.
func innerTUN(t *InnerTUNConfig, n *node, log *slog.Logger, closers *[]func() error) error {
	p := netip.MustParsePrefix(t.Address)
	name := t.Name
	if name == "" {
		name = "udptunnel1"
	}
	mtu := t.MTU
	if mtu == 0 {
		for _, f := range n.ifaces {
			if m := f.dev.InnerMTU(); mtu == 0 || m < mtu {
				mtu = m
			}
		}
	}
	dev, err := tun.Open(tun.Config{Name: name, MTU: mtu})
	if err != nil {
		return err
	}
	*closers = append(*closers, dev.Close)
	nic, err := n.st.AddNIC(dev.LinkEndpoint(), stack.NICOptions{Name: name})
	if err != nil {
		return err
	}
	if err := n.st.AddAddress(nic, p); err != nil {
		return err
	}
	// Forwarding is a property of the NIC a packet arrives on: the TUN
	// (host to overlay) and the tunnel interfaces (replies back), never
	// the underlay, so nothing arriving from the outside is routed.
	nics := []stack.NICID{nic}
	for _, f := range n.ifaces {
		nics = append(nics, f.dev.NIC())
	}
	for _, id := range nics {
		for _, proto := range []tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber} {
			if _, err := n.st.GVisor().SetNICForwarding(id, proto, true); err != nil {
				return fmt.Errorf("IP forwarding on %s: %v", n.st.NICName(id), err)
			}
		}
	}
	log.Info("inner TUN up", "name", name, "address", p, "mtu", mtu,
		"host", fmt.Sprintf("ip addr add <another address of %v> dev %s; ip route add <overlay prefix> dev %s", p.Masked(), name, name))
	return nil
}

// hostUDPMetrics exports the counters of the hostudp underlay: datagrams
// each way, inner checksums completed (the inner-offload mode, where the
// endpoint verifies them) and drops by reason.
func hostUDPMetrics(ep *hostudp.Endpoint) []extraMetric {
	counter := func(name, help string, labels prometheus.Labels, v func(hostudp.Stats) uint64) extraMetric {
		return extraMetric{
			desc:  prometheus.NewDesc("udptunnel_underlay_"+name, help, nil, labels),
			typ:   prometheus.CounterValue,
			value: func() float64 { return float64(v(ep.Stats())) },
		}
	}
	out := []extraMetric{
		counter("rx_packets_total", "Datagrams the hostudp underlay delivered to the stack.", nil, func(s hostudp.Stats) uint64 { return s.RxPackets }),
		counter("tx_packets_total", "Datagrams the hostudp underlay handed to the host.", nil, func(s hostudp.Stats) uint64 { return s.TxPackets }),
		counter("checksums_completed_total", "Received datagrams whose partial inner TCP/UDP checksum the hostudp underlay completed (offload mode).", nil,
			func(s hostudp.Stats) uint64 { return s.RxChecksumCompleted }),
	}
	hostudp.Drops{}.Each(func(reason string, _ uint64) {
		out = append(out, counter("drops_total", "Packets the hostudp underlay dropped, by reason.", prometheus.Labels{"reason": reason},
			func(s hostudp.Stats) uint64 {
				var n uint64
				s.Dropped.Each(func(r string, v uint64) {
					if r == reason {
						n = v
					}
				})
				return n
			}))
	})
	return out
}
