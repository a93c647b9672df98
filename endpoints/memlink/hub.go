package memlink

import (
	"fmt"
	"slices"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// mac is an Ethernet address in a form that indexes a map without
// allocating.
type mac [header.EthernetAddressSize]byte

// Hub joins any number of Ethernet ports. It is a learning switch: it learns
// which port each source MAC lives behind, forwards unicast frames to the
// learned port only, and floods broadcast, multicast and unknown unicast
// frames to every port but the one they came from. Entries never age; they
// move when a MAC shows up behind another port and go when their port
// closes.
//
// Its ports carry Ethernet frames and are meant to be wrapped with gVisor's
// ethernet.New. All its methods are safe for concurrent use.
type Hub struct {
	opts Options

	mu sync.RWMutex
	// ports is replaced, never modified, so that a reader may range over it
	// after unlocking.
	//
	// +checklocks:mu
	ports []*Endpoint
	// fdb maps learned source MACs to ports.
	//
	// +checklocks:mu
	fdb map[mac]*Endpoint
	// made counts the ports made, to give each its own random stream.
	//
	// +checklocks:mu
	made uint64
	// +checklocks:mu
	closed bool
}

// NewHub returns a hub with no ports. Every port shares opts, except for
// opts.MACA and opts.MACB, which NewHub ignores, and opts.Ethernet, which it
// sets.
func NewHub(opts Options) (*Hub, error) {
	opts.MACA, opts.MACB = "", ""
	opts.Ethernet = true
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Hub{opts: opts, fdb: make(map[mac]*Endpoint)}, nil
}

// NewPort returns a new port with link address addr, or a generated one if
// addr is empty. A port made after Close is closed already. NewPort panics
// if addr is neither empty nor a unicast Ethernet address.
func (h *Hub) NewPort(addr tcpip.LinkAddress) *Endpoint {
	if err := checkMAC(addr); err != nil {
		panic(fmt.Sprintf("memlink: Hub.NewPort: %v", err))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e := newEndpoint(&h.opts, addr, h.made)
	h.made++
	e.hub = h
	if h.closed {
		e.closed.Store(true)
		return e
	}
	h.ports = append(slices.Clip(h.ports), e)
	return e
}

// Close closes every port and makes later ports closed.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	ports := h.ports
	h.mu.Unlock()
	for _, p := range ports {
		p.Close()
	}
}

// remove forgets port e and the MACs learned behind it.
func (h *Hub) remove(e *Endpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ports = slices.DeleteFunc(slices.Clone(h.ports), func(p *Endpoint) bool { return p == e })
	for k, p := range h.fdb {
		if p == e {
			delete(h.fdb, k)
		}
	}
}

// frameAddrs returns the destination and source MACs of frame pkt.
func frameAddrs(pkt *stack.PacketBuffer) (dst, src mac, ok bool) {
	eth := header.Ethernet(pkt.LinkHeader().Slice())
	if len(eth) < header.EthernetMinimumSize {
		// The writer built the frame without pushing a link header.
		buf := pkt.ToBuffer()
		defer buf.Release()
		v, ok := buf.PullUp(0, header.EthernetMinimumSize)
		if !ok {
			return dst, src, false
		}
		eth = v.AsSlice()
	}
	copy(dst[:], eth)
	copy(src[:], eth[header.EthernetAddressSize:])
	return dst, src, true
}

// forward switches frame pkt, from dst and src, written to port from.
func (h *Hub) forward(from *Endpoint, pkt *stack.PacketBuffer, dst, src mac, v verdict) {
	h.mu.RLock()
	ports := h.ports
	to, known := h.fdb[dst]
	learned := h.fdb[src] == from
	h.mu.RUnlock()

	if !learned && src[0]&1 == 0 {
		h.learn(src, from)
	}
	if dst[0]&1 == 0 && known {
		// A frame for the port it came from goes nowhere, as on a switch.
		if to != from {
			to.receive(pkt, v, &fanout{left: v.copies})
		}
		return
	}
	f := fanout{left: v.copies * len(ports)}
	if slices.Contains(ports, from) {
		f.left -= v.copies
	}
	for _, p := range ports {
		if p != from {
			p.receive(pkt, v, &f)
		}
	}
}

// learn records that src lives behind port.
func (h *Hub) learn(src mac, port *Endpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A port closing concurrently must not be learned again.
	if slices.Contains(h.ports, port) {
		h.fdb[src] = port
	}
}
