package main

// Building a node from a Config: the stack, its underlay NIC, the tunnel
// sockets (shared where a protocol serves several interfaces on one port,
// as the kernel's VXLAN and Geneve do), the tunnel interfaces with their
// inner addresses and routes. `check` builds the same over an in-memory
// underlay, so that every value the protocol packages validate is checked
// without touching the host.

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/capture"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/bareudp"
	"github.com/udptunnel/udptunnel/tunnels/fou"
	"github.com/udptunnel/udptunnel/tunnels/geneve"
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
	"github.com/udptunnel/udptunnel/tunnels/l2tp"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// node is a stack with its underlay and tunnel interfaces.
type node struct {
	st       *stack.Stack
	underlay stack.NICID
	// local is the underlay address of this end.
	local  netip.Addr
	ifaces []*iface
	// evpn says the VXLAN interfaces are bound to EVPN: proxy on.
	evpn bool
	// offload says the underlay runs hostudp's inner-offload mode: the
	// VXLAN devices get checksum offload and GSO.
	offload bool
	// sockets are the tunnel sockets, by protocol and port (or tunnel).
	sockets map[string]any
	// captures are the inner capture files, closed after the stack.
	captures []*os.File
	// seq numbers the default names of the devices whose packages
	// number them from a process-wide counter (fou and gue share one,
	// gtp has its own): numbered per node instead, a configuration's
	// names are the same in check, in run's dry build and in its real one.
	seq map[string]int
}

// close closes the stack, and with it every interface and socket, then
// the capture files.
func (n *node) close() error {
	n.st.Close()
	var errs []error
	for _, f := range n.captures {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// innerCapture returns the stack option that captures every tunnel device
// to a pcap file: path itself when cfg has one interface, else path with
// the interface's name before the extension (inner.vxlan42.pcap).
func (n *node) innerCapture(path string, interfaces int) func(string, stack.Layer, stack.LinkEndpoint) (stack.LinkEndpoint, error) {
	return func(name string, layer stack.Layer, ep stack.LinkEndpoint) (stack.LinkEndpoint, error) {
		p := path
		if interfaces > 1 {
			ext := filepath.Ext(path)
			p = strings.TrimSuffix(path, ext) + "." + name + ext
		}
		f, err := os.Create(p)
		if err != nil {
			return nil, fmt.Errorf("pcap.inner: %w", err)
		}
		n.captures = append(n.captures, f)
		lt := capture.LinkRaw
		if layer == stack.L2 {
			lt = capture.LinkEthernet
		}
		return capture.New(ep, f, capture.Options{LinkType: lt})
	}
}

// iface is one built tunnel interface.
type iface struct {
	name  string
	proto string
	dev   *stack.Device
	sock  *stack.Socket
	// fdb is a VXLAN interface's forwarding database (nil for others).
	fdb *vxlan.FDB
	// vx is a VXLAN interface's device (nil for others), for EVPN.
	vx *vxlan.Device
	// cfg is the interface's configuration.
	cfg *InterfaceConfig
}

// underlayFunc attaches the underlay to st: it returns the underlay NIC and
// this end's underlay address.
type underlayFunc func(st *stack.Stack) (stack.NICID, netip.Addr, error)

// buildNode builds cfg's stack and interfaces over the underlay ul. On error
// the stack is closed and nothing is left.
func buildNode(cfg *Config, l *lines, ul underlayFunc, log *slog.Logger) (_ *node, err error) {
	n := &node{sockets: map[string]any{}, seq: map[string]int{}, evpn: cfg.EVPN != nil, offload: cfg.Underlay.Offload}
	opts := stack.Options{Logger: log}
	if cfg.Pcap.Inner != "" {
		opts.WrapDevice = n.innerCapture(cfg.Pcap.Inner, len(cfg.Interfaces))
	}
	n.st = stack.New(opts)
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	if n.underlay, n.local, err = ul(n.st); err != nil {
		return nil, l.errAt(err.Error(), "underlay")
	}
	mtu := cfg.Underlay.MTU
	if mtu == 0 {
		mtu = 1500
	}
	for i := range cfg.Interfaces {
		ic := &cfg.Interfaces[i]
		f, err := n.addInterface(ic, mtu)
		if err != nil {
			return nil, l.errAt(err.Error(), "interfaces", i)
		}
		for j, a := range ic.Addresses {
			if err := n.st.AddAddress(f.dev.NIC(), netip.MustParsePrefix(a)); err != nil {
				return nil, l.errAt(err.Error(), "interfaces", i, "addresses", j)
			}
		}
		for j, r := range ic.Routes {
			via, _ := netip.ParseAddr(r.Via)
			if err := n.st.AddRoute(netip.MustParsePrefix(r.To), via, f.dev.NIC()); err != nil {
				return nil, l.errAt(err.Error(), "interfaces", i, "routes", j)
			}
		}
		f.cfg = ic
		n.ifaces = append(n.ifaces, f)
		log.Info("interface up", "name", f.name, "type", f.proto, "mtu", f.dev.InnerMTU(), "addresses", ic.Addresses)
	}
	return n, nil
}

// addr parses an address the config check already accepted ("" = zero).
func addr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// addInterface builds one interface.
func (n *node) addInterface(ic *InterfaceConfig, underlayMTU uint32) (*iface, error) {
	var id uint32
	if ic.ID != nil {
		id = *ic.ID
	}
	remote, local := addr(ic.Remote), addr(ic.Local)
	f := &iface{proto: ic.Type}
	switch ic.Type {
	case "vxlan":
		s, err := shared(n, fmt.Sprintf("vxlan/%d", ic.port()), func() (*vxlan.Socket, error) {
			return vxlan.OpenSocket(n.st, vxlan.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, ic.Port)})
		})
		if err != nil {
			return nil, err
		}
		c := vxlan.Config{Name: ic.Name, VNI: vxlan.VNI(id), Local: local, TTL: ic.TTL, TOS: ic.TOS, DF: ic.DF,
			MTU: ic.MTU, UnderlayMTU: underlayMTU, ZeroChecksum: ic.ZeroChecksum, Proxy: n.evpn,
			// The inner-offload underlay finishes inner checksums and
			// segments what the device hands it whole.
			ChecksumOffload: n.offload, GSO: n.offload}
		if remote.IsValid() {
			c.Remotes = []netip.Addr{remote}
		}
		for _, r := range ic.Remotes {
			c.Remotes = append(c.Remotes, addr(r))
		}
		if v := ic.VXLAN; v != nil {
			c.Learning, c.AgeingTime, c.MaxEntries = v.Learning, v.Ageing.d(), v.MaxEntries
			c.SrcPortMin, c.SrcPortMax = v.SrcPortMin, v.SrcPortMax
			c.Proxy = c.Proxy || v.Proxy
		}
		d, err := s.AddDevice(nil, c)
		if err != nil {
			return nil, err
		}
		if v := ic.VXLAN; v != nil {
			for j, e := range v.FDB {
				m, _ := parseMAC(e.MAC)
				if err := d.FDB().Add(vxlan.MAC(m), vxlan.Remote{Addr: addr(e.Remote)}); err != nil {
					d.Close()
					return nil, fmt.Errorf("vxlan.fdb[%d]: %w", j, err)
				}
			}
		}
		f.dev, f.sock, f.fdb, f.vx = d.Device, s.Tunnel(), d.FDB(), d
	case "geneve":
		s, err := shared(n, fmt.Sprintf("geneve/%d", ic.port()), func() (*geneve.Socket, error) {
			return geneve.OpenSocket(n.st, geneve.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, ic.Port)})
		})
		if err != nil {
			return nil, err
		}
		c := geneve.Config{Name: ic.Name, VNI: geneve.VNI(id), Remote: remote, Local: local, TTL: ic.TTL, TOS: ic.TOS,
			MTU: ic.MTU, UnderlayMTU: underlayMTU, ZeroChecksum: ic.ZeroChecksum}
		if ic.DF {
			c.DF = geneve.DFSet
		}
		if g := ic.Geneve; g != nil {
			c.InnerProtoInherit = g.L3
		}
		d, err := s.AddDevice(nil, c)
		if err != nil {
			return nil, err
		}
		f.dev, f.sock = d.Device, s.Tunnel()
	case "l2tp":
		t := ic.L2TP
		if t == nil {
			t = &L2TPConfig{}
		}
		tid, ptid := t.TunnelID, t.PeerTunnelID
		if tid == 0 {
			tid = 1
		}
		if ptid == 0 {
			ptid = tid
		}
		port := ic.Port
		if port == 0 {
			port = l2tp.DefaultPort
		}
		sc := l2tp.SocketConfig{TunnelID: tid, PeerTunnelID: ptid,
			Local: netip.AddrPortFrom(local, port), Remote: netip.AddrPortFrom(remote, port), ZeroChecksum: ic.ZeroChecksum}
		s, err := shared(n, fmt.Sprintf("l2tp/%d", tid), func() (*l2tp.Socket, error) {
			return l2tp.OpenSocket(n.st, sc)
		})
		if err != nil {
			return nil, err
		}
		// Sessions of one tunnel share its socket, connected to one peer:
		// an interface whose tunnel settings differ from the tunnel's
		// would silently send to the other interface's remote.
		if have := s.Config(); have.Remote != sc.Remote || have.Local != sc.Local || have.PeerTunnelID != sc.PeerTunnelID || have.ZeroChecksum != sc.ZeroChecksum {
			return nil, fmt.Errorf("l2tp tunnel_id %d is already another interface's tunnel to %v, and its sessions share its remote, local, port, "+
				"peer_tunnel_id and zero_checksum: give this interface its own l2tp.tunnel_id", tid, have.Remote)
		}
		peer := t.PeerSessionID
		if peer == 0 {
			peer = id
		}
		cookie, _ := parseCookie(t.Cookie)
		peerCookie, _ := parseCookie(t.PeerCookie)
		c := l2tp.Config{Name: ic.Name, ID: l2tp.SessionID(id), PeerID: l2tp.SessionID(peer), Cookie: cookie, PeerCookie: peerCookie,
			L2Spec: map[string]l2tp.L2SpecType{"": l2tp.L2SpecNone, "none": l2tp.L2SpecNone, "default": l2tp.L2SpecDefault}[t.L2Spec],
			Seq:    map[string]l2tp.SeqMode{"": l2tp.SeqNone, "none": l2tp.SeqNone, "send": l2tp.SeqSend, "recv": l2tp.SeqRecv, "both": l2tp.SeqBoth}[t.Seq],
			MTU:    ic.MTU, UnderlayMTU: underlayMTU, TTL: ic.TTL, TOS: ic.TOS, DF: ic.DF}
		d, err := s.AddDevice(nil, c)
		if err != nil {
			return nil, err
		}
		f.dev, f.sock = d.Device, s.Tunnel()
	case "gtpu":
		s, err := shared(n, fmt.Sprintf("gtpu/%d", ic.port()), func() (*gtpu.Socket, error) {
			return gtpu.OpenSocket(n.st, gtpu.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, ic.Port)})
		})
		if err != nil {
			return nil, err
		}
		c := gtpu.Config{Name: n.defaultName(ic.Name, "gtp", "gtp"), Local: local, Port: ic.Port, TTL: ic.TTL, TOS: ic.TOS, DF: ic.DF,
			MTU: ic.MTU, UnderlayMTU: underlayMTU, ZeroChecksum: ic.ZeroChecksum}
		if ic.GTPU.Role == "sgsn" {
			c.Role = gtpu.RoleSGSN
		}
		for _, ss := range ic.GTPU.Sessions {
			peer := addr(ss.Peer)
			if !peer.IsValid() {
				peer = remote
			}
			c.Sessions = append(c.Sessions, gtpu.Session{LocalTEID: gtpu.TEID(ss.LocalTEID), RemoteTEID: gtpu.TEID(ss.RemoteTEID),
				Peer: peer, UE4: addr(ss.UE4), UE6: addr(ss.UE6)})
		}
		d, err := s.AddDevice(nil, c)
		if err != nil {
			return nil, err
		}
		f.dev, f.sock = d.Device, s.Tunnel()
	case "fou", "gue":
		sc := fou.SocketConfig{Type: fou.TypeGUE, Local: netip.AddrPortFrom(netip.Addr{}, ic.Port)}
		c := fou.Config{Name: n.defaultName(ic.Name, ic.Type, "fou"), Remote: remote, Local: local, EncapDport: ic.Port, TTL: ic.TTL, TOS: ic.TOS, DF: ic.DF,
			MTU: ic.MTU, UnderlayMTU: underlayMTU, ZeroChecksum: ic.ZeroChecksum}
		if ic.Type == "fou" {
			proto := fou.ProtoGRE
			if ic.FOU != nil {
				proto = map[string]fou.Proto{"": fou.ProtoGRE, "gre": fou.ProtoGRE, "ipip": fou.ProtoIPIP, "ipv6": fou.ProtoIPv6}[ic.FOU.Proto]
			}
			sc.Type, sc.Proto, c.Proto = fou.TypeFOU, proto, proto
			if proto == fou.ProtoGRE && ic.ID != nil {
				c.HasKey, c.Key = true, id
			}
		}
		s, err := shared(n, fmt.Sprintf("%s/%d/%v", ic.Type, ic.port(), sc.Proto), func() (*fou.Socket, error) {
			return fou.OpenSocket(n.st, sc)
		})
		if err != nil {
			return nil, err
		}
		d, err := s.AddDevice(nil, c)
		if err != nil {
			return nil, err
		}
		f.dev, f.sock = d.Device, s.Tunnel()
	case "bareudp", "mplsudp":
		port := ic.Port
		if port == 0 {
			port = bareudp.MPLSPort
		}
		s, err := bareudp.OpenSocket(n.st, bareudp.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, port)})
		if err != nil {
			return nil, err
		}
		c := bareudp.Config{Name: ic.Name, EtherType: bareudp.EtherTypeIPv4, Multiproto: true, Remote: remote, Local: local,
			TTL: ic.TTL, TOS: ic.TOS, DF: ic.DF, MTU: ic.MTU, UnderlayMTU: underlayMTU, ZeroChecksum: ic.ZeroChecksum}
		if ic.Type == "mplsudp" {
			c.EtherType, c.Multiproto = bareudp.EtherTypeMPLSUnicast, false
			c.Labels, c.LocalLabels = []bareudp.Label{bareudp.Label(id)}, []bareudp.Label{bareudp.Label(id)}
			if b := ic.BareUDP; b != nil && len(b.LocalLabels) > 0 {
				c.LocalLabels = nil
				for _, x := range b.LocalLabels {
					c.LocalLabels = append(c.LocalLabels, bareudp.Label(x))
				}
			}
		}
		d, err := s.AddDevice(nil, c)
		if err != nil {
			s.Close()
			return nil, err
		}
		n.sockets[fmt.Sprintf("bareudp/%d", port)] = s
		f.dev, f.sock = d.Device, s.Tunnel()
	default:
		return nil, fmt.Errorf("type %q: %w", ic.Type, errors.ErrUnsupported)
	}
	f.name = f.dev.Name()
	return f, nil
}

// defaultName returns name, or if it is empty prefix with the next number
// of the node's sequence seq.
func (n *node) defaultName(name, prefix, seq string) string {
	if name != "" {
		return name
	}
	name = fmt.Sprintf("%s%d", prefix, n.seq[seq])
	n.seq[seq]++
	return name
}

// shared returns the socket of a protocol stored under key, opening it with
// open the first time.
func shared[S any](n *node, key string, open func() (*S, error)) (*S, error) {
	if s, ok := n.sockets[key]; ok {
		return s.(*S), nil
	}
	s, err := open()
	if err != nil {
		return nil, err
	}
	n.sockets[key] = s
	return s, nil
}

// d returns the duration.
func (d Duration) d() time.Duration { return time.Duration(d) }
