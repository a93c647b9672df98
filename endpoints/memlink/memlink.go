// Package memlink provides in-memory link endpoints that join gVisor network
// stacks living in one process: NewPair makes a point-to-point wire, the
// analog of a veth pair, and NewHub makes a learning switch with any number
// of ports, the analog of a Linux bridge with a veth to every host.
//
// An Endpoint implements stack.LinkEndpoint. By default it carries raw IP
// packets with no link header and needs no link address resolution, like
// gVisor's link/pipe. With Options.Ethernet (always, for hub ports) it is
// meant to be wrapped with gVisor's ethernet.New, and then carries Ethernet
// frames whose headers the wrapper pushes and parses, so that ARP and NDP
// resolve across it.
//
// Delivery is asynchronous by default: each receiving endpoint has a bounded
// queue drained by one goroutine, so a writer never runs the receiving
// stack's code, as with a real NIC. Options.Sync delivers on the writer's
// goroutine instead. The wire can lose, duplicate, reorder and delay packets
// (Options.Impairment), repeatably from a seed, and counts what it carries
// and every packet it drops, by reason (Endpoint.Stats).
//
// memlink is a test and harness component, not a network emulator: it has no
// notion of bandwidth or serialization delay, it never fragments (a packet
// above the MTU is dropped and counted), it does not do GSO, and it uses the
// real clock. It is not a kernel interface: nothing outside the process can
// reach it.
//
// # Teardown
//
// A stack removing its NIC stops the endpoint's goroutine. To tear down
// stacks that still exchange traffic, Close the endpoints (or the Hub) first
// and destroy the stacks after: Close waits for delivery goroutines without
// holding any stack lock, whereas the stack waits for them while holding its
// own.
package memlink

import (
	"gvisor.dev/gvisor/pkg/buffer"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var _ stack.LinkEndpoint = (*Endpoint)(nil)
var _ stack.GSOEndpoint = (*Endpoint)(nil)

// Endpoint is one end of a pair or one port of a hub. It implements
// stack.LinkEndpoint; all its methods are safe for concurrent use.
type Endpoint struct {
	// Immutable after construction.
	sync     bool
	ethernet bool
	offload  bool
	gso      bool
	queueLen int
	delays   bool      // Impairment delays packets.
	reorders bool      // Impairment reorders packets.
	imp      *impairer // nil for a perfect wire.
	peer     *Endpoint // The other end; nil for hub ports.
	hub      *Hub      // The hub; nil for pair ends.

	// mtu is the network-layer MTU.
	mtu    atomic.Uint32
	down   atomic.Bool
	closed atomic.Bool

	stats counters

	mu sync.Mutex
	// +checklocks:mu
	linkAddr tcpip.LinkAddress
	// +checklocks:mu
	onClose func()

	rx rxQueue

	// workers counts running delivery goroutines.
	workers sync.WaitGroup
}

// NewPair returns the two ends of a new point-to-point wire. Both ends share
// opts; the MACs are opts.MACA and opts.MACB (generated when empty).
func NewPair(opts Options) (a, b *Endpoint, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	a = newEndpoint(&opts, opts.MACA, 0)
	b = newEndpoint(&opts, opts.MACB, 1)
	a.peer, b.peer = b, a
	return a, b, nil
}

// newEndpoint returns an endpoint configured from validated opts, with link
// address addr, or a generated one if addr is empty. stream selects the
// endpoint's own random stream among those seeded by opts.Impairment.Seed.
func newEndpoint(opts *Options, addr tcpip.LinkAddress, stream uint64) *Endpoint {
	if addr == "" {
		addr = generateMAC()
	}
	e := &Endpoint{
		sync:     opts.Sync,
		ethernet: opts.Ethernet,
		offload:  opts.ChecksumOffload,
		gso:      opts.GSO,
		queueLen: opts.QueueLen,
		delays:   opts.Impairment.delays(),
		reorders: opts.Impairment.Reorder > 0,
		linkAddr: addr,
	}
	if opts.Impairment.active() {
		e.imp = newImpairer(opts.Impairment, stream)
	}
	e.mtu.Store(opts.MTU)
	e.rx.wake = make(chan struct{}, 1)
	return e
}

// macCounter numbers generated MACs.
var macCounter atomic.Uint32

// generateMAC returns a locally administered unicast MAC, 02:6d:6c:xx:xx:xx
// ("ml" for memlink), unique within the process for the first 2^24 calls.
func generateMAC() tcpip.LinkAddress {
	n := macCounter.Add(1)
	return tcpip.LinkAddress([]byte{0x02, 0x6d, 0x6c, byte(n >> 16), byte(n >> 8), byte(n)})
}

// SetLinkUp sets the link state. While an endpoint is down, packets written
// to it and packets arriving at it are dropped and counted in
// Drops.LinkDown, as if its underlay had gone away. Endpoints start up.
func (e *Endpoint) SetLinkUp(up bool) {
	e.down.Store(!up)
}

// LinkUp reports the link state set by SetLinkUp.
func (e *Endpoint) LinkUp() bool {
	return !e.down.Load()
}

// MTU implements stack.LinkEndpoint.MTU.
//
// For an Ethernet endpoint it is the frame MTU, Options.MTU plus the 14-byte
// Ethernet header, so that the ethernet.New wrapper, which subtracts the
// header, reports Options.MTU to the stack.
func (e *Endpoint) MTU() uint32 {
	mtu := e.mtu.Load()
	if e.ethernet {
		mtu += header.EthernetMinimumSize
	}
	return mtu
}

// SetMTU implements stack.LinkEndpoint.SetMTU. The value is the
// network-layer MTU in both modes: gVisor's Ethernet wrapper passes SetMTU
// through unchanged and subtracts its header only when it reads MTU.
// Values outside 68..65535 are ignored.
func (e *Endpoint) SetMTU(mtu uint32) {
	if mtu < minMTU || mtu > maxMTU {
		return
	}
	e.mtu.Store(mtu)
}

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength. It is zero:
// a raw endpoint has no link header, and an Ethernet endpoint's wrapper adds
// its own.
func (*Endpoint) MaxHeaderLength() uint16 {
	return 0
}

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.linkAddr
}

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (e *Endpoint) SetLinkAddress(addr tcpip.LinkAddress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.linkAddr = addr
}

// Capabilities implements stack.LinkEndpoint.Capabilities.
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	var c stack.LinkEndpointCapabilities
	if e.ethernet {
		c |= stack.CapabilityResolutionRequired
	}
	if e.offload {
		c |= stack.CapabilityTXChecksumOffload | stack.CapabilityRXChecksumOffload
	}
	return c
}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (e *Endpoint) ARPHardwareType() header.ARPHardwareType {
	if e.ethernet {
		return header.ARPHardwareEther
	}
	return header.ARPHardwareNone
}

// AddHeader implements stack.LinkEndpoint.AddHeader. It adds nothing: the
// Ethernet wrapper, if any, adds the header.
func (*Endpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*Endpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Attach implements stack.LinkEndpoint.Attach.
//
// Attaching a dispatcher starts the delivery goroutine (unless Options.Sync
// is set); attaching nil stops it without waiting for it and drops the
// packets still queued. A closed endpoint stays detached.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	q := &e.rx
	q.mu.Lock()
	if d != nil && e.closed.Load() {
		q.mu.Unlock()
		return
	}
	q.dispatcher = d
	var dropped []inbound
	switch {
	case d == nil:
		if q.stop != nil {
			close(q.stop)
			q.stop = nil
		}
		dropped = q.pending
		q.pending = nil
	case !e.sync && q.stop == nil:
		q.stop = make(chan struct{})
		e.workers.Add(1)
		go e.run(q.stop)
	}
	q.mu.Unlock()
	e.release(dropped)
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *Endpoint) IsAttached() bool {
	e.rx.mu.Lock()
	defer e.rx.mu.Unlock()
	return e.rx.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait. It waits for the delivery
// goroutine, which Close or Attach(nil) stops.
func (e *Endpoint) Wait() {
	e.workers.Wait()
}

// Close implements stack.LinkEndpoint.Close. It detaches e, drops the packets
// queued for it, waits for its delivery goroutine and, for a hub port,
// removes it from the hub. Packets written to or arriving at a closed
// endpoint are dropped and counted in Drops.NotAttached; the peer of a pair
// keeps working. Close is idempotent.
func (e *Endpoint) Close() {
	if e.closed.Swap(true) {
		return
	}
	e.Attach(nil)
	e.workers.Wait()
	if e.hub != nil {
		e.hub.remove(e)
	}
	e.mu.Lock()
	action := e.onClose
	e.onClose = nil
	e.mu.Unlock()
	if action != nil {
		action()
	}
}

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (e *Endpoint) SetOnCloseAction(action func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onClose = action
}

// WritePackets implements stack.LinkWriter.WritePackets.
//
// The packets stay owned by the caller: each receiver gets a fresh packet
// holding a copy of the whole packet, link header included, so nothing
// written here is referenced after WritePackets returns. Like a wire, it
// reports every packet as written; packets it drops are counted in Stats.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		e.transmit(pkt)
	}
	return pkts.Len(), nil
}

// transmit puts one packet on the wire.
func (e *Endpoint) transmit(pkt *stack.PacketBuffer) {
	size := pkt.Size()
	switch {
	case e.closed.Load():
		e.stats.notAttached.Add(1)
		return
	case e.down.Load():
		e.stats.linkDown.Add(1)
		return
	case e.networkSize(pkt) > int(e.mtu.Load()) && pkt.GSOOptions.Type == stack.GSONone:
		e.stats.tooBig.Add(1)
		return
	}
	var dst, src mac
	if e.hub != nil {
		var ok bool
		if dst, src, ok = frameAddrs(pkt); !ok {
			e.stats.malformed.Add(1)
			return
		}
	}
	e.stats.txPackets.Add(1)
	e.stats.txBytes.Add(uint64(size))

	v := verdict{copies: 1}
	if e.imp != nil {
		v = e.imp.decide()
		if v.lost {
			e.stats.loss.Add(1)
			return
		}
		if v.copies > 1 {
			e.stats.duplicated.Add(uint64(v.copies - 1))
		}
	}
	if e.hub != nil {
		e.hub.forward(e, pkt, dst, src, v)
		return
	}
	e.peer.receive(pkt, v, &fanout{left: v.copies})
}

// networkSize returns the size of pkt without its link header.
func (e *Endpoint) networkSize(pkt *stack.PacketBuffer) int {
	size := pkt.Size()
	if e.ethernet {
		// An Ethernet frame has its header whether the wrapper pushed it as
		// a link header or the writer built the frame by hand.
		return max(size-header.EthernetMinimumSize, 0)
	}
	return size - len(pkt.LinkHeader().Slice())
}

// fanout tracks the copies to be made of one written packet.
type fanout struct {
	// left counts the copies not yet made or skipped.
	left int
}

// clone returns a fresh inbound packet holding the whole of pkt, link header
// included, with no header or struct field set, so that the receiving
// stack's link protocol can parse it from scratch.
//
// A synchronous wire hands its last copy over copy-on-write, as link/pipe
// does: it is delivered before the writer gets the packet back, and every
// earlier copy was taken before it. All other copies are deep, as in
// link/veth: a queued packet outlives the write, and gVisor writes some
// headers through plain slices that copy-on-write does not see, so copies
// must share no bytes with each other or with the writer's packet.
//
// Either way the first headerSplit bytes get a chunk of their own, as a NIC
// with header split gives: gVisor's IP layer holds a view of the header
// chunk while it delivers a packet, so that every later header read, which
// goes through Buffer.PullUp, copies the chunk it touches. With the headers
// apart that copy is of a few hundred bytes, not of the whole packet; the
// payload is only ever read.
func (e *Endpoint) clone(pkt *stack.PacketBuffer, f *fanout) *stack.PacketBuffer {
	f.left--
	payload := pkt.ToBuffer()
	n := min(headerSplit, int(payload.Size()))
	hdr := buffer.NewView(n)
	payload.SubApply(0, n, func(v *buffer.View) { hdr.Write(v.AsSlice()) })
	payload.TrimFront(int64(n))
	if !e.sync || f.left > 0 {
		deep := payload.DeepClone()
		payload.Release()
		payload = deep
	}
	out := buffer.MakeWithView(hdr)
	out.Merge(&payload)
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: out})
}

// headerSplit is how many leading bytes of a delivered packet get their own
// chunk: room for Ethernet, IPv6 with options, UDP and a tunnel header, or
// an inner Ethernet, IP and TCP header with options.
const headerSplit = 256

// receive takes delivery of v.copies copies of pkt, which was written to the
// other side of the wire.
func (e *Endpoint) receive(pkt *stack.PacketBuffer, v verdict, f *fanout) {
	for range v.copies {
		switch {
		case e.closed.Load():
			f.left--
			e.stats.notAttached.Add(1)
			continue
		case e.down.Load():
			f.left--
			e.stats.linkDown.Add(1)
			continue
		}
		if e.sync {
			e.rx.mu.Lock()
			d := e.rx.dispatcher
			e.rx.mu.Unlock()
			if d == nil {
				f.left--
				e.stats.notAttached.Add(1)
				continue
			}
			e.deliver(d, pkt.NetworkProtocolNumber, e.clone(pkt, f))
			continue
		}
		e.enqueue(inbound{
			pkt:      e.clone(pkt, f),
			proto:    pkt.NetworkProtocolNumber,
			delay:    v.delay,
			holdBack: v.holdBack,
		})
	}
}

// deliver hands pkt to d and releases it.
func (e *Endpoint) deliver(d stack.NetworkDispatcher, proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if e.offload {
		pkt.RXChecksumValidated = true
	}
	e.stats.rxPackets.Add(1)
	e.stats.rxBytes.Add(uint64(pkt.Size()))
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// gsoMaxSize is the largest GSO packet the wire carries: what an IP packet
// can hold.
const gsoMaxSize = 1<<16 - 1

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize.
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.gso {
		return gsoMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: host GSO when
// Options.GSO is set (the peer takes the packets whole).
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if e.gso {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}
