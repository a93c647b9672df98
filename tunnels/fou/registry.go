package fou

// The IP protocol handlers that FOU and GUE resubmit to (the kernel's
// ipip_rcv, ip6_tnl/sit's ipip6_rcv and gre_rcv registered as struct
// net_protocol), and the per-stack registry of tunnel devices they look
// devices up in (the kernel's per-netns ip_tunnel_net hash tables).
//
// A stack has one handler per IP protocol, whatever number of FOU and GUE
// ports resubmit to it: the handlers are registered with the stack when
// the first socket needing them opens and unregistered when the last one
// closes.

import (
	"fmt"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/udptunnel/udptunnel/stack"
)

// tunnelKey identifies a tunnel device to the receive handlers: the outer
// addresses as received (remote = packet source, local = packet
// destination; a zero local is the wildcard) and, for GRE, the key.
type tunnelKey struct {
	remote, local netip.Addr
	hasKey        bool
	key           uint32
}

// Handler is the receive handler of one IP protocol (4, 41 or 47) in one
// stack: it takes what FOU and GUE sockets resubmit and delivers it to
// the tunnel device of the outer (source, destination) pair.
type Handler struct {
	proto    Proto
	reg      *registry
	counters stack.Counters
	devs     stack.Registry[tunnelKey, *Device]
}

var _ stack.IPProtocolHandler = (*Handler)(nil)

// Counters returns the handler's counters: drops before a device is found
// (DropTruncated, DropBadHeader, DropUnknownTunnel).
func (h *Handler) Counters() *stack.Counters { return &h.counters }

// Proto returns the IP protocol the handler serves.
func (h *Handler) Proto() Proto { return h.proto }

// lookup finds the device for an outer packet from remote to local: the
// exact pair first, then a device with a wildcard local address, as
// ip_tunnel_lookup does.
func (h *Handler) lookup(remote, local netip.Addr, hasKey bool, key uint32) *Device {
	m := h.devs.All()
	if d := m[tunnelKey{remote, local, hasKey, key}]; d != nil {
		return d
	}
	return m[tunnelKey{remote, netip.Addr{}, hasKey, key}]
}

// registry is the FOU state of one stack.
type registry struct {
	st       *stack.Stack
	mu       sync.Mutex // guards refs, protoRefs and changes of handlers' devs
	refs     int        // open sockets
	handlers map[Proto]*Handler
	// protoRefs counts the sockets that resubmit to each protocol; the
	// handler is registered with the stack while it is positive.
	protoRefs map[Proto]int
}

var (
	registriesMu sync.Mutex
	registries   = map[*stack.Stack]*registry{}
)

// handledProtos are the IP protocols this package has handlers for.
var handledProtos = [...]Proto{ProtoIPIP, ProtoIPv6, ProtoGRE}

// acquire returns st's registry with the handlers of protos registered,
// taking one reference.
func acquire(st *stack.Stack, protos []Proto) (*registry, error) {
	registriesMu.Lock()
	defer registriesMu.Unlock()
	r := registries[st]
	if r == nil {
		r = &registry{st: st, handlers: map[Proto]*Handler{}, protoRefs: map[Proto]int{}}
		for _, p := range handledProtos {
			h := &Handler{proto: p, reg: r}
			r.handlers[p] = h
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var done []Proto
	for _, p := range protos {
		if r.protoRefs[p] == 0 {
			if err := st.RegisterIPProtocol(tcpip.TransportProtocolNumber(p), r.handlers[p]); err != nil {
				for _, q := range done {
					st.UnregisterIPProtocol(tcpip.TransportProtocolNumber(q))
				}
				return nil, fmt.Errorf("ip protocol %v handler: %w", p, err)
			}
			done = append(done, p)
		}
	}
	for _, p := range protos {
		r.protoRefs[p]++
	}
	r.refs++
	registries[st] = r
	return r, nil
}

// release drops a reference taken by acquire with the same protos.
func (r *registry) release(protos []Proto) {
	registriesMu.Lock()
	defer registriesMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range protos {
		r.protoRefs[p]--
		if r.protoRefs[p] == 0 {
			r.st.UnregisterIPProtocol(tcpip.TransportProtocolNumber(p))
		}
	}
	r.refs--
	if r.refs == 0 {
		delete(registries, r.st)
	}
}

// check reports ErrExists if a device has k in the handler of one of
// protos.
func (r *registry) check(protos []Proto, k tunnelKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkLocked(protos, k)
}

func (r *registry) checkLocked(protos []Proto, k tunnelKey) error {
	for _, p := range protos {
		if r.handlers[p].devs.Get(k) != nil {
			return fmt.Errorf("remote %v local %v (%v): %w: another device has this tunnel", k.remote, k.local, p, stack.ErrExists)
		}
	}
	return nil
}

// add binds d under k in the handlers of protos; nothing changes on
// error.
func (r *registry) add(d *Device, protos []Proto, k tunnelKey) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.checkLocked(protos, k); err != nil {
		return err
	}
	for _, p := range protos {
		r.handlers[p].devs.Set(k, d)
	}
	return nil
}

// remove unbinds d from every handler.
func (r *registry) remove(d *Device) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.handlers {
		h.devs.DeleteValue(d)
	}
}

// HandlerOf returns the receive handler of proto (ProtoIPIP, ProtoIPv6 or
// ProtoGRE) in st, or nil while no FOU or GUE socket is open in st.
func HandlerOf(st *stack.Stack, proto Proto) *Handler {
	registriesMu.Lock()
	defer registriesMu.Unlock()
	if r := registries[st]; r != nil {
		return r.handlers[proto]
	}
	return nil
}
