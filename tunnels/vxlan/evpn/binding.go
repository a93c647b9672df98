package evpn

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/osrg/gobgp/v4/pkg/apiutil"

	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// Binding is one VNI's EVPN instance: a VXLAN device bound to a Speaker.
// Its tables (the device's FDB, flood list and proxy neighbours) are
// written from BGP; its local MACs are advertised.
type Binding struct {
	s   *Speaker
	dev *vxlan.Device
	in  *instance

	// The fields below are guarded by s.mu.
	closed bool
	imet   *apiutil.Path // the originated inclusive multicast route
	nOut   int           // routes originated now: imet and every local route
	local  map[vxlan.MAC]*localMAC

	flood     map[netip.Addr]*floodEntry // by originator
	macs      map[vxlan.MAC]map[string]*remoteRoute
	fdb       map[vxlan.MAC]vxlan.Remote // what the binding installed
	ips       map[netip.Addr]map[string]*remoteRoute
	neighbors map[netip.Addr]vxlan.MAC // what the binding installed

	// seen dedupes local neighbour observations on the transmit path:
	// a (MAC, IP) pair is queued to the control plane once.
	seen sync.Map
}

// floodEntry is a flood list entry the binding installed: the remote as
// written (the first route's label decides its VNI) and the number of
// routes that name its originator.
type floodEntry struct {
	rem  vxlan.Remote
	refs int
}

// localMAC is a MAC address on the userspace side of the binding.
type localMAC struct {
	ips     map[netip.Addr]bool
	seq     uint32                       // MAC mobility sequence number advertised
	yielded bool                         // withdrawn: a remote VTEP has it with a higher number
	remote  uint32                       // highest remote number seen while yielded
	routes  map[netip.Addr]*apiutil.Path // originated, by IP (zero: MAC only)
}

type seenKey struct {
	mac vxlan.MAC
	ip  netip.Addr
}

func newBinding(s *Speaker, dev *vxlan.Device, in *instance) *Binding {
	return &Binding{
		s: s, dev: dev, in: in,
		local:     map[vxlan.MAC]*localMAC{},
		flood:     map[netip.Addr]*floodEntry{},
		macs:      map[vxlan.MAC]map[string]*remoteRoute{},
		fdb:       map[vxlan.MAC]vxlan.Remote{},
		ips:       map[netip.Addr]map[string]*remoteRoute{},
		neighbors: map[netip.Addr]vxlan.MAC{},
	}
}

// VNI returns the binding's VNI.
func (b *Binding) VNI() vxlan.VNI { return b.in.vni }

// Device returns the bound device.
func (b *Binding) Device() *vxlan.Device { return b.dev }

// imports reports whether r carries one of the binding's import targets.
func (b *Binding) imports(r *remoteRoute) bool {
	for _, rt := range r.rts {
		if b.in.imp[rt] {
			return true
		}
	}
	return false
}

// remoteFor is where r says to send: its next hop or originator, with its
// label as the VNI when it differs from the device's.
func (b *Binding) remoteFor(addr netip.Addr, r *remoteRoute) vxlan.Remote {
	rem := vxlan.Remote{Addr: addr}
	if r.vni != b.in.vni {
		rem.VNI = r.vni
	}
	return rem
}

// apply imports r. s.mu is held.
func (b *Binding) apply(r *remoteRoute) {
	switch r.typ {
	case typeInclusive:
		if e := b.flood[r.origin]; e != nil {
			e.refs++
			return
		}
		rem := b.remoteFor(r.origin, r)
		if err := b.dev.FDB().Append(vxlan.MAC{}, rem); err != nil {
			b.s.stats.ignored.Add(1)
			return
		}
		b.flood[r.origin] = &floodEntry{rem: rem, refs: 1}
		b.s.installed(r.peer)
	case typeMACIP:
		addTo(b.macs, r.mac, r)
		b.reconcileMAC(r.mac)
		if r.ip.IsValid() {
			addTo(b.ips, r.ip, r)
			b.reconcileIP(r.ip)
		}
	}
}

// unapply undoes apply(r). s.mu is held.
func (b *Binding) unapply(r *remoteRoute) {
	switch r.typ {
	case typeInclusive:
		e := b.flood[r.origin]
		if e == nil {
			return
		}
		if e.refs--; e.refs == 0 {
			delete(b.flood, r.origin)
			if err := b.dev.FDB().DeleteRemote(vxlan.MAC{}, e.rem); err == nil {
				b.s.stats.removed.Add(1)
			}
		}
	case typeMACIP:
		removeFrom(b.macs, r.mac, r.key)
		b.reconcileMAC(r.mac)
		if r.ip.IsValid() {
			removeFrom(b.ips, r.ip, r.key)
			b.reconcileIP(r.ip)
		}
	}
}

func addTo[K comparable](m map[K]map[string]*remoteRoute, k K, r *remoteRoute) {
	if m[k] == nil {
		m[k] = map[string]*remoteRoute{}
	}
	m[k][r.key] = r
}

func removeFrom[K comparable](m map[K]map[string]*remoteRoute, k K, key string) {
	delete(m[k], key)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// best chooses among routes for one MAC or IP (RFC 7432 §15.1): the
// highest MAC mobility sequence number, then the lowest VTEP address; the
// NLRI text breaks the last tie so that every VTEP agrees.
func best(routes map[string]*remoteRoute) *remoteRoute {
	var w *remoteRoute
	for _, r := range routes {
		switch {
		case w == nil, r.seq > w.seq:
			w = r
		case r.seq < w.seq:
		case r.nexthop.Less(w.nexthop), r.nexthop == w.nexthop && r.key < w.key:
			w = r
		}
	}
	return w
}

// reconcileMAC makes the FDB entry of mac, and the local route of mac if
// it is local, agree with the routes known for it. s.mu is held.
func (b *Binding) reconcileMAC(mac vxlan.MAC) {
	w := best(b.macs[mac])
	if lm := b.local[mac]; lm != nil {
		// RFC 7432 §15.1: a remote VTEP advertises the MAC with a higher
		// sequence number, or the same one from a lower address: it moved
		// there (or lives there too, and the lower address keeps it).
		// Withdraw ours. It stays withdrawn until the MAC is declared
		// local again (AddLocalMAC, or Bind for the device's own): the
		// remote routes going away, as when a session drops, is no
		// evidence that it came back.
		if w != nil && !lm.yielded && (w.seq > lm.seq || w.seq == lm.seq && w.nexthop.Less(b.s.cfg.VTEP)) {
			b.withdrawLocal(lm)
			lm.yielded = true
			b.s.stats.movedAway.Add(1)
		}
		if w != nil && lm.yielded {
			lm.remote = max(lm.remote, w.seq)
		}
		if !lm.yielded {
			w = nil // a local MAC needs no FDB entry
		}
	}
	have, installed := b.fdb[mac]
	if w == nil {
		if installed {
			delete(b.fdb, mac)
			if err := b.dev.FDB().Delete(mac); err == nil {
				b.s.stats.removed.Add(1)
			}
		}
		return
	}
	want := b.remoteFor(w.nexthop, w)
	if installed && have == want {
		return
	}
	if err := b.dev.FDB().Add(mac, want); err != nil {
		b.s.stats.ignored.Add(1)
		return
	}
	b.fdb[mac] = want
	b.s.installed(w.peer)
}

// reconcileIP makes the proxy neighbour entry of ip agree with the routes
// known for it. s.mu is held.
func (b *Binding) reconcileIP(ip netip.Addr) {
	w := best(b.ips[ip])
	have, installed := b.neighbors[ip]
	if w == nil {
		if installed {
			delete(b.neighbors, ip)
			if err := b.dev.DeleteNeighbor(ip); err == nil {
				b.s.stats.removed.Add(1)
			}
		}
		return
	}
	if installed && have == w.mac {
		return
	}
	if err := b.dev.AddNeighbor(ip, w.mac); err != nil {
		b.s.stats.ignored.Add(1)
		return
	}
	b.neighbors[ip] = w.mac
	b.s.installed(w.peer)
}

// originate advertises the VNI's inclusive multicast route and the
// device's own MAC with its addresses. s.mu is held.
func (b *Binding) originate() error {
	p, err := b.s.inclusivePath(b.in)
	if err != nil {
		return fmt.Errorf("vni %d: inclusive multicast route: %w", b.in.vni, err)
	}
	if err := b.add(p); err != nil {
		return fmt.Errorf("vni %d: inclusive multicast route: %w", b.in.vni, err)
	}
	b.imet = p
	b.nOut++
	var mac vxlan.MAC
	copy(mac[:], b.dev.MAC())
	return b.addLocal(mac, deviceAddrs(b.dev))
}

// add originates p.
func (b *Binding) add(p *apiutil.Path) error {
	rs, err := b.s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}})
	if err != nil {
		return err
	}
	return rs[0].Error
}

// withdraw withdraws originated routes. They are named by their paths,
// not by the UUIDs AddPath returns: GoBGP v4.8.0 looks a UUID up by
// walking its whole RIB, for each UUID, which makes withdrawing a table
// of 10,000 routes take minutes; by path it is one lookup each.
func (b *Binding) withdraw(ps ...*apiutil.Path) error {
	if len(ps) == 0 {
		return nil
	}
	ws := make([]*apiutil.Path, len(ps))
	for i, p := range ps {
		ws[i] = forWithdrawal(p)
	}
	return b.s.srv.DeletePath(apiutil.DeletePathRequest{Paths: ws})
}

// deviceAddrs lists dev's unicast addresses in its stack, link-local
// IPv6 excepted: those never leave the segment's own resolution.
func deviceAddrs(dev *vxlan.Device) []netip.Addr {
	info, ok := dev.Stack().GVisor().NICInfo()[dev.NIC()]
	if !ok {
		return nil
	}
	var ips []netip.Addr
	for _, pa := range info.ProtocolAddresses {
		a, ok := netip.AddrFromSlice(pa.AddressWithPrefix.Address.AsSlice())
		if ok && usableIP(a) {
			ips = append(ips, a)
		}
	}
	return ips
}

func usableIP(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !a.IsLinkLocalUnicast() && !a.IsLoopback()
}

// addLocal makes mac local with ips and advertises what is new. s.mu is held.
func (b *Binding) addLocal(mac vxlan.MAC, ips []netip.Addr) error {
	lm := b.local[mac]
	switch {
	case lm == nil:
		lm = &localMAC{ips: map[netip.Addr]bool{}, routes: map[netip.Addr]*apiutil.Path{}}
		// MAC mobility: above every number a remote VTEP uses for it.
		if w := best(b.macs[mac]); w != nil {
			lm.seq = w.seq + 1
		}
		b.local[mac] = lm
	case lm.yielded:
		// It moved back here: above every number seen for it.
		lm.yielded = false
		lm.seq = lm.remote + 1
		if w := best(b.macs[mac]); w != nil {
			lm.seq = max(lm.seq, w.seq+1)
		}
	}
	for _, ip := range ips {
		lm.ips[ip.Unmap()] = true
	}
	err := b.advertiseLocal(mac, lm)
	b.reconcileMAC(mac)
	return err
}

// advertiseLocal originates the routes of lm that are not out yet: the
// MAC alone (key: the zero Addr) and the MAC with each IP. s.mu is held.
func (b *Binding) advertiseLocal(mac vxlan.MAC, lm *localMAC) error {
	if lm.yielded {
		return nil
	}
	want := []netip.Addr{{}}
	for ip := range lm.ips {
		want = append(want, ip)
	}
	var errs []error
	for _, ip := range want {
		if _, ok := lm.routes[ip]; ok {
			continue
		}
		p, err := b.s.macIPPath(b.in, mac, ip, lm.seq)
		if err == nil {
			if err = b.add(p); err == nil {
				lm.routes[ip] = p
				b.nOut++
				continue
			}
		}
		errs = append(errs, fmt.Errorf("vni %d: MAC/IP route %v %v: %w", b.in.vni, mac, ip, err))
	}
	return errors.Join(errs...)
}

// withdrawLocal withdraws every route of lm. s.mu is held.
func (b *Binding) withdrawLocal(lm *localMAC) error {
	ps := make([]*apiutil.Path, 0, len(lm.routes))
	for _, p := range lm.routes {
		ps = append(ps, p)
	}
	clear(lm.routes)
	b.nOut -= len(ps)
	return b.withdraw(ps...)
}

// AddLocalMAC declares mac a MAC address of the userspace side besides the
// device's own (a host bridged behind the inner stack, a migrated
// workload) and advertises it with ips. Adding IPs to a local MAC
// advertises the new MAC/IP routes.
func (b *Binding) AddLocalMAC(mac vxlan.MAC, ips ...netip.Addr) error {
	if mac.IsMulticast() || mac.IsZero() {
		return invalid("mac", mac, "need a unicast address")
	}
	for i, ip := range ips {
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
			return invalid(fmt.Sprintf("ips[%d]", i), ip, "need a unicast address")
		}
	}
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return b.addLocal(mac, ips)
}

// RemoveLocalMAC withdraws the routes of the local mac and forgets it; a
// remote route for it, if any, is installed then.
func (b *Binding) RemoveLocalMAC(mac vxlan.MAC) error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	lm := b.local[mac]
	if lm == nil {
		return fmt.Errorf("mac %v: %w", mac, ErrNotLocal)
	}
	err := b.withdrawLocal(lm)
	delete(b.local, mac)
	for ip := range lm.ips {
		b.seen.Delete(seenKey{mac, ip})
	}
	b.reconcileMAC(mac)
	return err
}

// observe is the device's local neighbour hook, on the transmit path: a
// local MAC seen with an IP address in ARP or ND gets its MAC/IP route.
// It only queues the work.
func (b *Binding) observe(mac vxlan.MAC, ip netip.Addr) {
	ip = ip.Unmap()
	if !usableIP(ip) {
		return
	}
	k := seenKey{mac, ip}
	if _, dup := b.seen.LoadOrStore(k, struct{}{}); dup {
		return
	}
	select {
	case b.s.work <- func() { b.learnLocalIP(mac, ip) }:
	default:
		b.seen.Delete(k) // seen again later, queued then
		b.s.stats.dropped.Add(1)
	}
}

func (b *Binding) learnLocalIP(mac vxlan.MAC, ip netip.Addr) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	lm := b.local[mac]
	if lm == nil {
		b.seen.Delete(seenKey{mac, ip}) // counted again once the MAC is local
	}
	if b.closed || lm == nil || lm.ips[ip] {
		return
	}
	lm.ips[ip] = true
	b.advertiseLocal(mac, lm)
}

// Close unbinds the device: its routes are withdrawn and the FDB, flood
// list and proxy entries that BGP installed are removed. The device stays
// open.
func (b *Binding) Close() error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	return b.closeLocked()
}

func (b *Binding) closeLocked() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.dev.SetLocalNeighborHook(nil)
	var errs []error
	var ps []*apiutil.Path
	if b.imet != nil {
		ps = append(ps, b.imet)
		b.imet = nil
	}
	for _, lm := range b.local {
		for _, p := range lm.routes {
			ps = append(ps, p)
		}
		clear(lm.routes)
	}
	b.nOut = 0
	if err := b.withdraw(ps...); err != nil {
		errs = append(errs, fmt.Errorf("vni %d: withdraw: %w", b.in.vni, err))
	}
	for mac := range b.fdb {
		if b.dev.FDB().Delete(mac) == nil {
			b.s.stats.removed.Add(1)
		}
	}
	for ip := range b.neighbors {
		if b.dev.DeleteNeighbor(ip) == nil {
			b.s.stats.removed.Add(1)
		}
	}
	for _, e := range b.flood {
		if b.dev.FDB().DeleteRemote(vxlan.MAC{}, e.rem) == nil {
			b.s.stats.removed.Add(1)
		}
	}
	clear(b.flood)
	clear(b.fdb)
	clear(b.neighbors)
	clear(b.macs)
	clear(b.ips)
	delete(b.s.bindings, b.in.vni)
	return errors.Join(errs...)
}
