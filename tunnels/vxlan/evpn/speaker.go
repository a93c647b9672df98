package evpn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// Speaker is one in-process BGP speaker (a GoBGP server) serving the EVPN
// instances of the VXLAN devices bound to it.
type Speaker struct {
	cfg Config
	srv *server.BgpServer

	ctx    context.Context // ends at Close: stops the watch and the worker
	cancel context.CancelFunc
	work   chan func() // route updates asked for on the transmit path
	wg     sync.WaitGroup

	// mu serialises the control plane: BGP events, Bind, local MAC
	// changes. It is never held on the data path.
	mu       sync.Mutex
	closed   bool
	bindings map[vxlan.VNI]*Binding
	routes   map[string]*remoteRoute // received best paths, by NLRI
	peers    map[netip.Addr]*peerState

	stats counters
}

type peerState struct {
	asn        uint32
	state      bgp.FSMState
	since      time.Time
	up         time.Time     // last Established
	firstRoute time.Duration // Established -> first route installed
	eor        time.Duration // Established -> End-of-RIB received
	received   int           // best paths from the peer now held
}

type counters struct {
	received, withdrawn, installed, removed, ignored, movedAway, dropped atomic.Uint64
	lastConvergence                                                      atomic.Int64
}

// Stats are the speaker's counters, for metrics.
type Stats struct {
	// SessionsUp is the number of BGP sessions in Established state.
	SessionsUp int `json:"sessions_up"`
	// Sessions is the number of configured BGP sessions.
	Sessions int `json:"sessions"`
	// RoutesReceived counts EVPN routes received (best-path additions
	// and replacements).
	RoutesReceived uint64 `json:"routes_received"`
	// RoutesWithdrawn counts withdrawals received, including those of a
	// session that went down.
	RoutesWithdrawn uint64 `json:"routes_withdrawn"`
	// RoutesInstalled counts table entries written from routes: FDB
	// entries, flood list entries, proxy neighbour entries.
	RoutesInstalled uint64 `json:"routes_installed"`
	// RoutesRemoved counts table entries removed because their route went.
	RoutesRemoved uint64 `json:"routes_removed"`
	// RoutesIgnored counts received routes this VTEP does not use (other
	// route types, multihoming, no matching route target).
	RoutesIgnored uint64 `json:"routes_ignored"`
	// RoutesAdvertised is the number of routes originated now.
	RoutesAdvertised int `json:"routes_advertised"`
	// MACsMovedAway counts local MACs withdrawn because a remote VTEP
	// advertised them with a higher MAC mobility sequence number.
	MACsMovedAway uint64 `json:"macs_moved_away"`
	// LocalDropped counts local neighbour observations dropped because
	// the control plane's queue was full.
	LocalDropped uint64 `json:"local_dropped"`
	// LastConvergence is the time from the last session's Established
	// to the first route from it installed.
	LastConvergence time.Duration `json:"last_convergence_ns"`
}

// Start starts a speaker: GoBGP in-process, its listener if
// cfg.ListenPort is set, and a session to every neighbor. Bad
// configuration is an error naming the field; nothing is started then.
func Start(cfg Config) (*Speaker, error) {
	cfg = cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelInfo)
	s := &Speaker{
		cfg:      cfg,
		srv:      server.NewBgpServer(server.LoggerOption(log, lvl)),
		work:     make(chan func(), 1024),
		bindings: map[vxlan.VNI]*Binding{},
		routes:   map[string]*remoteRoute{},
		peers:    map[netip.Addr]*peerState{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.srv.Serve() }()
	if err := s.start(); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.worker()
	return s, nil
}

// startMu serialises GoBGP's StartBgp across the speakers of a process:
// GoBGP v4.8.0 writes its route selection options into package globals
// (table.SelectionOptions, table.UseMultiplePaths) on every StartBgp, so
// two speakers starting at once race on them (always with the same
// values, ours being the defaults, but a race all the same).
var startMu sync.Mutex

func (s *Speaker) start() error {
	port := int32(-1) // GoBGP: never listen
	if s.cfg.ListenPort != 0 {
		port = int32(s.cfg.ListenPort)
	}
	var listen []string
	for _, a := range s.cfg.ListenAddresses {
		listen = append(listen, a.String())
	}
	startMu.Lock()
	err := s.srv.StartBgp(s.ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:             s.cfg.ASN,
		RouterId:        s.cfg.RouterID.String(),
		ListenPort:      port,
		ListenAddresses: listen,
	}})
	startMu.Unlock()
	if err != nil {
		return fmt.Errorf("evpn: start BGP (listen_port %d): %w", s.cfg.ListenPort, err)
	}
	// GoBGP refuses a watch without options; these three are what the
	// VTEP needs: best paths (the table), peers (sessions), End-of-RIB.
	if err := s.srv.WatchEvent(s.ctx, server.WatchEventMessageCallbacks{
		OnBestPath:   s.onBestPath,
		OnPeerUpdate: s.onPeer,
		OnPathEor:    s.onEOR,
	}, server.WatchBestPath(true), server.WatchPeer(), server.WatchEor(true)); err != nil {
		return fmt.Errorf("evpn: watch BGP events: %w", err)
	}
	for i, n := range s.cfg.Neighbors {
		if err := s.srv.AddPeer(s.ctx, &api.AddPeerRequest{Peer: s.peerConf(n)}); err != nil {
			return fmt.Errorf("evpn: neighbors[%d] %v: %w", i, n.Address, err)
		}
		s.mu.Lock()
		s.peers[n.Address] = &peerState{asn: n.ASN, since: time.Now()}
		s.mu.Unlock()
	}
	return nil
}

// peerConf is n as GoBGP's neighbor: the l2vpn-evpn AFI/SAFI must be
// configured, or FRR closes the session for lack of a common family.
func (s *Speaker) peerConf(n Neighbor) *api.Peer {
	hold := uint64(s.cfg.HoldTime / time.Second)
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.String(),
			PeerAsn:         n.ASN,
			AuthPassword:    n.Password,
		},
		Transport: &api.Transport{
			RemotePort:  uint32(n.Port),
			PassiveMode: n.Passive,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(s.cfg.ConnectRetry / time.Second),
			HoldTime:          hold,
			KeepaliveInterval: max(hold/3, 1),
		}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family:  &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN},
			Enabled: true,
		}}},
	}
	if n.LocalAddress.IsValid() {
		p.Transport.LocalAddress = n.LocalAddress.String()
	}
	if n.MultihopTTL != 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(n.MultihopTTL)}
	}
	return p
}

// worker runs route updates that the data path asked for (a neighbour
// seen in ARP or ND), off the transmit goroutine.
func (s *Speaker) worker() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case f := <-s.work:
			f()
		}
	}
}

// Close unbinds every device (withdrawing what the speaker originated and
// removing what it installed), closes the BGP sessions with a Cease
// notification and stops GoBGP. It leaves no goroutine, listener or timer
// behind.
func (s *Speaker) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	bs := make([]*Binding, 0, len(s.bindings))
	for _, b := range s.bindings {
		bs = append(bs, b)
	}
	s.mu.Unlock()
	var errs []error
	for _, b := range bs {
		errs = append(errs, b.Close())
	}
	s.srv.Stop()
	s.cancel()
	s.wg.Wait()
	return errors.Join(errs...)
}

// onPeer is GoBGP's peer event: session state.
func (s *Speaker) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[ev.Peer.State.NeighborAddress]
	if p == nil {
		return
	}
	if ev.Peer.State.SessionState != p.state {
		p.state, p.since = ev.Peer.State.SessionState, at
		if p.state == bgp.BGP_FSM_ESTABLISHED {
			p.up, p.firstRoute, p.eor = at, 0, 0
		}
	}
}

// onEOR notes the time from Established to the peer's End-of-RIB marker.
func (s *Speaker) onEOR(p *apiutil.Path, at time.Time) {
	if p.Family != bgp.RF_EVPN {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps := s.peers[p.PeerAddress]; ps != nil && !ps.up.IsZero() && ps.eor == 0 {
		ps.eor = max(at.Sub(ps.up), 1)
	}
}

// onBestPath is GoBGP's best-path event: the routes the VTEP imports.
func (s *Speaker) onBestPath(paths []*apiutil.Path, _ time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, p := range paths {
		if p.Family != bgp.RF_EVPN {
			continue
		}
		// A best path replaces the previous one of its NLRI: whatever
		// comes now, what the old one installed goes first.
		key := p.Nlri.String()
		if old := s.routes[key]; old != nil {
			if p.Withdrawal {
				s.stats.withdrawn.Add(1)
			}
			s.forget(old)
		}
		if p.Withdrawal || !p.PeerAddress.IsValid() {
			continue // gone, or our own (local paths have no peer)
		}
		r, err := parseRoute(p)
		if err != nil {
			s.stats.ignored.Add(1)
			continue
		}
		if r.nexthop == s.cfg.VTEP || (r.typ == typeInclusive && r.origin == s.cfg.VTEP) {
			// Our own routes reflected back: never a remote.
			s.stats.ignored.Add(1)
			continue
		}
		s.stats.received.Add(1)
		s.learn(&r)
	}
}

// learn records r and imports it into every binding it targets. s.mu is held.
func (s *Speaker) learn(r *remoteRoute) {
	s.routes[r.key] = r
	if ps := s.peers[r.peer]; ps != nil {
		ps.received++
	}
	imported := false
	for _, b := range s.bindings {
		if b.imports(r) {
			b.apply(r)
			imported = true
		}
	}
	if !imported {
		s.stats.ignored.Add(1)
	}
}

// forget removes r and undoes its imports. s.mu is held.
func (s *Speaker) forget(r *remoteRoute) {
	delete(s.routes, r.key)
	if ps := s.peers[r.peer]; ps != nil && ps.received > 0 {
		ps.received--
	}
	for _, b := range s.bindings {
		if b.imports(r) {
			b.unapply(r)
		}
	}
}

// installed notes a table write caused by a route from peer: the first
// one after Established gives the convergence time. s.mu is held.
func (s *Speaker) installed(peer netip.Addr) {
	s.stats.installed.Add(1)
	if ps := s.peers[peer]; ps != nil && !ps.up.IsZero() && ps.firstRoute == 0 {
		ps.firstRoute = max(time.Since(ps.up), 1)
		s.stats.lastConvergence.Store(int64(ps.firstRoute))
	}
}

// Stats returns a snapshot of the speaker's counters.
func (s *Speaker) Stats() Stats {
	s.mu.Lock()
	up, adv := 0, 0
	for _, p := range s.peers {
		if p.state == bgp.BGP_FSM_ESTABLISHED {
			up++
		}
	}
	for _, b := range s.bindings {
		adv += b.nOut
	}
	n := len(s.peers)
	s.mu.Unlock()
	return Stats{
		SessionsUp:       up,
		Sessions:         n,
		RoutesReceived:   s.stats.received.Load(),
		RoutesWithdrawn:  s.stats.withdrawn.Load(),
		RoutesInstalled:  s.stats.installed.Load(),
		RoutesRemoved:    s.stats.removed.Load(),
		RoutesIgnored:    s.stats.ignored.Load(),
		RoutesAdvertised: adv,
		MACsMovedAway:    s.stats.movedAway.Load(),
		LocalDropped:     s.stats.dropped.Load(),
		LastConvergence:  time.Duration(s.stats.lastConvergence.Load()),
	}
}

// Bind makes dev's VNI an EVPN instance of the speaker: it imports the
// routes that carry the instance's import targets, and originates the
// VNI's inclusive multicast route and the MAC/IP routes of dev's MAC and
// addresses. dev must have data-plane learning off. Bad configuration is
// an error naming the field; nothing changes then.
func (s *Speaker) Bind(dev *vxlan.Device, cfg BindConfig) (*Binding, error) {
	if dev == nil {
		return nil, invalid("device", nil, "need a VXLAN device")
	}
	if dev.Config().Learning {
		return nil, invalid("learning", true, fmt.Sprintf("device %s learns from the data plane; with EVPN the table comes from BGP only", dev.Name()))
	}
	in, err := newInstance(&s.cfg, dev.VNI(), cfg)
	if err != nil {
		return nil, fmt.Errorf("vni %d: %w", dev.VNI(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.bindings[in.vni] != nil {
		return nil, fmt.Errorf("vni %d: %w: already bound", in.vni, stack.ErrExists)
	}
	b := newBinding(s, dev, in)
	s.bindings[in.vni] = b
	for _, r := range s.sortedRoutes() {
		if b.imports(r) {
			b.apply(r)
		}
	}
	if err := b.originate(); err != nil {
		b.closeLocked()
		return nil, err
	}
	dev.SetLocalNeighborHook(b.observe)
	return b, nil
}

// sortedRoutes returns the received routes in a stable order. s.mu is held.
func (s *Speaker) sortedRoutes() []*remoteRoute {
	rs := make([]*remoteRoute, 0, len(s.routes))
	for _, r := range s.routes {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].key < rs[j].key })
	return rs
}
