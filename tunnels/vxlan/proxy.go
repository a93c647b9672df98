package vxlan

// ARP/ND proxy ("proxy", the kernel's VXLAN_F_PROXY: arp_reduce,
// neigh_reduce and vxlan_na_create in drivers/net/vxlan/vxlan_core.c), what
// EVPN calls ARP suppression, and the observer of the local side's
// neighbours that an EVPN control plane advertises (MAC/IP routes).
//
// Both look only at frames the inner stack transmits through the device,
// after a cheap Ethernet type test: ARP, and IPv6 packets whose next header
// is ICMPv6 with hop limit 255 (every NDP message has it; pings and MLD do
// not). Everything else takes the plain transmit path untouched.

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/stack"
)

// ErrNeighborNotFound means DeleteNeighbor found no entry for the address.
var ErrNeighborNotFound = errors.New("proxy neighbour entry not found")

// Neighbor is one entry of the device's proxy neighbour table: the inner IP
// address IP lives at the Ethernet address MAC (somewhere behind a remote
// VTEP). An IPv4 address is always plain IPv4, never IPv4-mapped IPv6.
type Neighbor struct {
	IP  netip.Addr
	MAC MAC
}

// ProxyStats counts what the ARP/ND proxy did with the ARP requests and
// neighbour solicitations the inner stack sent (Config.Proxy).
type ProxyStats struct {
	// Replies counts requests answered by the device: the reply was queued
	// for the inner stack and the request was not sent to the network.
	// (A reply the full queue had to drop is counted on the device's
	// counters as stack.DropQueueFull instead.)
	Replies uint64
	// Misses counts requests the device could not answer (no table entry
	// for the target, or one that names the device's own MAC): they are
	// flooded as without the proxy.
	Misses uint64
}

// proxyQueueLen bounds the replies waiting for the proxy's worker: a burst
// of resolutions larger than that loses replies, which the inner stack's
// retransmissions recover.
const proxyQueueLen = 64

// proxy is a device's neighbour table, its ARP/ND proxy and its local
// neighbour hook.
type proxy struct {
	// table maps netip.Addr to MAC; readers load from it without a
	// lock, writers are serialized by mu. sync.Map, as the FDB's: EVPN
	// fills it with one entry per remote MAC+IP route, and a
	// copy-on-write map would make each insert O(n) (100,000 routes, 5e9
	// copies).
	table sync.Map
	mu    sync.Mutex

	hook atomic.Pointer[func(MAC, netip.Addr)]

	replies, misses atomic.Uint64

	// The worker: replies wait in queue and are delivered to the inner
	// stack by the device's goroutine, never on the transmit goroutine,
	// which may hold the lock of the gVisor neighbour entry the reply
	// resolves. stopped (guarded by qmu) closes the queue to new replies.
	qmu     sync.RWMutex
	stopped bool
	queue   chan *stack.PacketBuffer
	stop    chan struct{}
	done    chan struct{} // nil until the worker starts
}

// proxyDeliverHook, if set (by tests), runs on the worker before each
// reply is delivered.
var proxyDeliverHook atomic.Pointer[func()]

// startProxy starts the reply worker of a Proxy device, unless the device
// closed already.
func (d *Device) startProxy() {
	p := &d.proxy
	p.qmu.Lock()
	defer p.qmu.Unlock()
	if p.stopped {
		return
	}
	p.queue = make(chan *stack.PacketBuffer, proxyQueueLen)
	p.stop = make(chan struct{})
	p.done = make(chan struct{})
	go d.proxyWorker(p.queue, p.stop, p.done)
}

// stopProxy stops the worker, if any, and releases the replies still
// queued; it returns once the worker has exited. The device's close path
// calls it.
func (d *Device) stopProxy() {
	p := &d.proxy
	p.qmu.Lock()
	p.stopped = true
	done := p.done
	p.qmu.Unlock()
	if done != nil {
		close(p.stop)
		<-done
	}
}

func (d *Device) proxyWorker(queue chan *stack.PacketBuffer, stop, done chan struct{}) {
	defer close(done)
	for {
		select {
		case pkt := <-queue:
			if h := proxyDeliverHook.Load(); h != nil {
				(*h)()
			}
			d.Deliver(pkt)
			pkt.DecRef()
		case <-stop:
			// No reply can be queued any more (stopped is set).
			for {
				select {
				case pkt := <-queue:
					d.Counters().Drop(stack.DropDeviceDown)
					pkt.DecRef()
				default:
					return
				}
			}
		}
	}
}

// enqueueReply hands frame, a whole Ethernet frame, to the worker. It
// reports false when the reply was dropped (queue full, device closing).
func (d *Device) enqueueReply(frame []byte) bool {
	p := &d.proxy
	p.qmu.RLock()
	defer p.qmu.RUnlock()
	if p.queue == nil {
		// No worker yet: AddDevice has not finished (and d.Device may be
		// unset). Nobody can have asked for a reply so early.
		return false
	}
	if p.stopped {
		d.Counters().Drop(stack.DropDeviceDown)
		return false
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	select {
	case p.queue <- pkt:
		return true
	default:
		pkt.DecRef()
		d.Counters().Drop(stack.DropQueueFull)
		return false
	}
}

// AddNeighbor adds an entry to the proxy neighbour table, or replaces the
// entry of ip: ARP requests and neighbour solicitations for ip are
// answered with mac when Config.Proxy is set. ip must be a unicast address
// (IPv4-mapped IPv6 is stored as IPv4); mac must be unicast and non-zero.
// The table may be filled whether or not the device proxies.
func (d *Device) AddNeighbor(ip netip.Addr, mac MAC) error {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback():
		return fmt.Errorf("neighbour ip %v: %w: need a unicast address", ip, stack.ErrInvalid)
	case ip.Zone() != "":
		return fmt.Errorf("neighbour ip %v: %w: zoned address", ip, stack.ErrInvalid)
	case mac.IsMulticast() || mac.IsZero():
		return fmt.Errorf("neighbour mac %v: %w: need a non-zero unicast address", mac, stack.ErrInvalid)
	}
	p := &d.proxy
	p.mu.Lock()
	defer p.mu.Unlock()
	p.table.Store(ip, mac)
	return nil
}

// DeleteNeighbor removes the proxy neighbour entry of ip. It returns an
// error wrapping ErrNeighborNotFound if there is none.
func (d *Device) DeleteNeighbor(ip netip.Addr) error {
	ip = ip.Unmap()
	p := &d.proxy
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.table.LoadAndDelete(ip); !ok {
		return fmt.Errorf("neighbour ip %v: %w", ip, ErrNeighborNotFound)
	}
	return nil
}

// Neighbors returns a snapshot of the proxy neighbour table, sorted by IP
// (IPv4 before IPv6).
func (d *Device) Neighbors() []Neighbor {
	var ns []Neighbor
	d.proxy.table.Range(func(ip, mac any) bool {
		ns = append(ns, Neighbor{IP: ip.(netip.Addr), MAC: mac.(MAC)})
		return true
	})
	slices.SortFunc(ns, func(a, b Neighbor) int { return a.IP.Compare(b.IP) })
	return ns
}

// ProxyStats returns the ARP/ND proxy's counters.
func (d *Device) ProxyStats() ProxyStats {
	return ProxyStats{Replies: d.proxy.replies.Load(), Misses: d.proxy.misses.Load()}
}

// SetLocalNeighborHook sets f (nil clears it) to be called for every
// (MAC, IP) pair the device sees on its local side, in the ARP and NDP
// frames the inner stack transmits through the device: the sender of ARP
// requests, replies and gratuitous ARP; the source of a neighbour
// solicitation that carries a source link-layer address option; the target
// of a neighbour advertisement with its target link-layer address option
// (or the Ethernet source without one). Pairs with an unspecified,
// multicast or loopback IP (duplicate address detection probes) or a
// multicast or zero MAC are skipped. It works whether or not the device
// proxies.
//
// f runs on the transmitting goroutine, possibly while the inner stack
// holds locks of its neighbour cache: it must be cheap, must not block and
// must not call back into the inner stack or close the device. Hand the
// pair to another goroutine (a buffered channel with a non-blocking send)
// for anything more.
func (d *Device) SetLocalNeighborHook(f func(mac MAC, ip netip.Addr)) {
	if f == nil {
		d.proxy.hook.Store(nil)
		return
	}
	d.proxy.hook.Store(&f)
}

// lookup returns the table's MAC for ip. It takes no lock and does not
// allocate (measured: sync.Map.Load of a netip.Addr key stays on the stack).
func (p *proxy) lookup(ip netip.Addr) (MAC, bool) {
	v, ok := p.table.Load(ip)
	if !ok {
		return MAC{}, false
	}
	return v.(MAC), true
}

// Ethernet types the transmit path tests before anything else.
const (
	etherTypeARP  = uint16(header.ARPProtocolNumber)
	etherTypeIPv6 = uint16(header.IPv6ProtocolNumber)
)

// neighborTransmit is the transmit path's look at a frame that may be ARP
// or NDP: it feeds the local neighbour hook and, on a Proxy device, answers
// what it can. It reports true when the frame was answered and must not be
// sent. typ is the frame's Ethernet type, already known to be ARP or IPv6.
func (d *Device) neighborTransmit(pkt *stack.PacketBuffer, typ uint16) bool {
	if typ == etherTypeIPv6 {
		// Only ICMPv6 with hop limit 255 can be NDP (RFC 4861 section
		// 7.1.1); pings and MLD go on without a copy.
		nh := pkt.NetworkHeader().Slice()
		if len(nh) < header.IPv6MinimumSize || nh[6] != uint8(header.ICMPv6ProtocolNumber) || nh[7] != 255 {
			return false
		}
	}
	v := pkt.ToView()
	defer v.Release()
	nf, ok := parseNeighborFrame(v.AsSlice())
	if !ok {
		return false
	}
	if hook := d.proxy.hook.Load(); hook != nil && nf.hasLocal {
		(*hook)(nf.localMAC, nf.localIP)
	}
	if !d.cfg.Proxy || !nf.request {
		return false
	}
	mac, ok := d.proxy.lookup(nf.target)
	if !ok || mac == d.mac {
		// A MAC of our own is not a remote host's (the kernel's
		// "bridge-local neighbor"): let the request go out.
		d.proxy.misses.Add(1)
		return false
	}
	if d.enqueueReply(nf.reply(mac)) {
		d.proxy.replies.Add(1)
	}
	return true
}

// neighborFrame is what parseNeighborFrame found in an ARP or NDP frame.
type neighborFrame struct {
	// hasLocal says localMAC and localIP are a neighbour of the local
	// side, for the hook.
	hasLocal bool
	localMAC MAC
	localIP  netip.Addr

	// request says the frame is a request the proxy may answer: an ARP
	// request or a neighbour solicitation, for target.
	request bool
	ipv6    bool
	target  netip.Addr
	// requester is who asked: the sender IP and the link address to
	// answer (ARP: the sender hardware address; NS: the source link-layer
	// address option, else the Ethernet source).
	requesterIP  netip.Addr
	requesterMAC MAC
}

// parseNeighborFrame decodes frame, a whole Ethernet frame, as ARP for IPv4
// over Ethernet or as an NDP neighbour solicitation or advertisement. It
// reports false for anything else, including malformed messages.
func parseNeighborFrame(frame []byte) (neighborFrame, bool) {
	if len(frame) < header.EthernetMinimumSize {
		return neighborFrame{}, false
	}
	eth := header.Ethernet(frame)
	var ethSrc MAC
	copy(ethSrc[:], eth.SourceAddress())
	body := frame[header.EthernetMinimumSize:]
	switch uint16(eth.Type()) {
	case etherTypeARP:
		return parseARP(body)
	case etherTypeIPv6:
		return parseNDP(body, ethSrc)
	}
	return neighborFrame{}, false
}

func parseARP(b []byte) (neighborFrame, bool) {
	arp := header.ARP(b)
	if !arp.IsValid() {
		return neighborFrame{}, false
	}
	var nf neighborFrame
	copy(nf.requesterMAC[:], arp.HardwareAddressSender())
	nf.requesterIP = netip.AddrFrom4([4]byte(arp.ProtocolAddressSender()))
	nf.target = netip.AddrFrom4([4]byte(arp.ProtocolAddressTarget()))
	switch arp.Op() {
	case header.ARPRequest, header.ARPReply:
	default:
		return neighborFrame{}, false
	}
	nf.setLocal(nf.requesterMAC, nf.requesterIP)
	// Not a probe (RFC 5227: sender 0.0.0.0) nor an announcement or
	// gratuitous ARP (sender = target): the inner stack never asks for
	// its own address otherwise. Loopback and multicast targets as in
	// arp_reduce.
	nf.request = arp.Op() == header.ARPRequest && nf.requesterIP != nf.target &&
		!nf.target.IsLoopback() && !nf.target.IsMulticast() && !nf.target.IsUnspecified() &&
		nf.canAnswer()
	return nf, true
}

func parseNDP(b []byte, ethSrc MAC) (neighborFrame, bool) {
	ip := header.IPv6(b)
	if !ip.IsValid(len(b)) || ip.NextHeader() != uint8(header.ICMPv6ProtocolNumber) || ip.HopLimit() != 255 {
		return neighborFrame{}, false
	}
	icmp := header.ICMPv6(b[header.IPv6MinimumSize : header.IPv6MinimumSize+int(ip.PayloadLength())])
	if len(icmp) < header.ICMPv6MinimumSize || icmp.Code() != 0 {
		return neighborFrame{}, false
	}
	src := netip.AddrFrom16(ip.SourceAddress().As16())
	nf := neighborFrame{ipv6: true, requesterIP: src}
	switch icmp.Type() {
	case header.ICMPv6NeighborSolicit:
		if len(icmp) < header.ICMPv6NeighborSolicitMinimumSize {
			return neighborFrame{}, false
		}
		ns := header.NDPNeighborSolicit(icmp.MessageBody())
		nf.target = netip.AddrFrom16(ns.TargetAddress().As16())
		sll, ok := linkLayerOption(ns.Options(), true)
		if !ok {
			return neighborFrame{}, false // malformed options: vxlan_na_create gives up too
		}
		nf.requesterMAC = ethSrc
		if sll != nil {
			nf.requesterMAC = *sll
			nf.setLocal(*sll, src)
		}
		nf.request = !nf.target.IsMulticast() && !nf.target.IsLoopback() && !nf.target.IsUnspecified() &&
			!netip.AddrFrom16(ip.DestinationAddress().As16()).IsLoopback() &&
			nf.canAnswer() // not DAD, whose source is unspecified
	case header.ICMPv6NeighborAdvert:
		if len(icmp) < header.ICMPv6NeighborAdvertMinimumSize {
			return neighborFrame{}, false
		}
		na := header.NDPNeighborAdvert(icmp.MessageBody())
		nf.target = netip.AddrFrom16(na.TargetAddress().As16())
		tll, ok := linkLayerOption(na.Options(), false)
		if !ok {
			return neighborFrame{}, false
		}
		mac := ethSrc
		if tll != nil {
			mac = *tll
		}
		nf.setLocal(mac, nf.target)
	default:
		return neighborFrame{}, false
	}
	return nf, true
}

// linkLayerOption returns the first source (source true) or target
// link-layer address option among opts (nil if there is none), or false if
// the options are malformed (a zero length, one running past the end: RFC
// 4861 section 4.6 says to discard the message).
func linkLayerOption(opts header.NDPOptions, source bool) (*MAC, bool) {
	it, err := opts.Iter(true)
	if err != nil {
		return nil, false
	}
	for {
		opt, done, err := it.Next()
		if err != nil {
			return nil, false
		}
		if done {
			return nil, true
		}
		var addr tcpip.LinkAddress
		switch o := opt.(type) {
		case header.NDPSourceLinkLayerAddressOption:
			if !source {
				continue
			}
			addr = o.EthernetAddress()
		case header.NDPTargetLinkLayerAddressOption:
			if source {
				continue
			}
			addr = o.EthernetAddress()
		default:
			continue
		}
		if len(addr) != len(MAC{}) {
			return nil, true // too short for Ethernet: as if absent
		}
		mac := MAC([]byte(addr))
		return &mac, true
	}
}

// canAnswer reports whether the requester can be answered: a unicast
// sender address (not the unspecified one of an ARP probe or a DAD
// solicitation) at a unicast link address.
func (nf *neighborFrame) canAnswer() bool {
	ip, mac := nf.requesterIP, nf.requesterMAC
	return !ip.IsUnspecified() && !ip.IsMulticast() && !ip.IsLoopback() && !mac.IsMulticast() && !mac.IsZero()
}

// setLocal records (mac, ip) for the hook unless one of them cannot be a
// host's.
func (nf *neighborFrame) setLocal(mac MAC, ip netip.Addr) {
	if mac.IsMulticast() || mac.IsZero() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
		return
	}
	nf.hasLocal, nf.localMAC, nf.localIP = true, mac, ip
}

// reply builds the answer to the request nf describes, for target at mac:
// an ARP reply or a neighbour advertisement, as a whole Ethernet frame.
func (nf *neighborFrame) reply(mac MAC) []byte {
	if nf.ipv6 {
		return nf.neighborAdvert(mac)
	}
	return nf.arpReply(mac)
}

// arpReply is arp_reduce's arp_create(ARPOP_REPLY, ...): from the target
// at mac to the requester.
func (nf *neighborFrame) arpReply(mac MAC) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(mac[:]),
		DstAddr: tcpip.LinkAddress(nf.requesterMAC[:]),
		Type:    header.ARPProtocolNumber,
	})
	arp := header.ARP(b[header.EthernetMinimumSize:])
	arp.SetIPv4OverEthernet()
	arp.SetOp(header.ARPReply)
	copy(arp.HardwareAddressSender(), mac[:])
	ts, rs := nf.target.As4(), nf.requesterIP.As4()
	copy(arp.ProtocolAddressSender(), ts[:])
	copy(arp.HardwareAddressTarget(), nf.requesterMAC[:])
	copy(arp.ProtocolAddressTarget(), rs[:])
	return b
}

// naLen is the ICMPv6 part of a proxied neighbour advertisement: the
// message and one target link-layer address option.
const naLen = header.ICMPv6NeighborAdvertMinimumSize + 8

// neighborAdvert is vxlan_na_create: a solicited neighbour advertisement
// from the target at mac to the requester, with the override flag and the
// target link-layer address option, the router flag clear.
func (nf *neighborFrame) neighborAdvert(mac MAC) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+naLen)
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(mac[:]),
		DstAddr: tcpip.LinkAddress(nf.requesterMAC[:]),
		Type:    header.IPv6ProtocolNumber,
	})
	src, dst := tcpip.AddrFrom16(nf.target.As16()), tcpip.AddrFrom16(nf.requesterIP.As16())
	header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
		PayloadLength:     naLen,
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	icmp := header.ICMPv6(b[header.EthernetMinimumSize+header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6NeighborAdvert)
	na := header.NDPNeighborAdvert(icmp.MessageBody())
	na.SetSolicitedFlag(true)
	na.SetOverrideFlag(true)
	na.SetTargetAddress(src)
	na.Options().Serialize(header.NDPOptionsSerializer{header.NDPTargetLinkLayerAddressOption(tcpip.LinkAddress(mac[:]))})
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: src, Dst: dst}))
	return b
}

// isNeighborEtherType returns the Ethernet type of eth (at least an
// Ethernet header) and whether the frame can be ARP or NDP: the transmit
// path's first, cheap test.
func isNeighborEtherType(eth []byte) (uint16, bool) {
	typ := uint16(header.Ethernet(eth).Type())
	return typ, typ == etherTypeARP || typ == etherTypeIPv6
}
