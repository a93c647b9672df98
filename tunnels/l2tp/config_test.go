package l2tp_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/l2tp"
)

func TestSocketConfigErrors(t *testing.T) {
	st := stack.New(stack.Options{})
	defer st.Close()
	remote := netip.MustParseAddrPort("10.99.0.2:1701")
	for _, tc := range []struct {
		name  string
		cfg   l2tp.SocketConfig
		field string
	}{
		{"tunnel id 0", l2tp.SocketConfig{PeerTunnelID: 1, Remote: remote}, "tunnel id"},
		{"peer tunnel id 0", l2tp.SocketConfig{TunnelID: 1, Remote: remote}, "peer tunnel id"},
		{"no remote", l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 1}, "remote"},
		{"unspecified remote", l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 1, Remote: netip.MustParseAddrPort("0.0.0.0:1701")}, "remote"},
		{"multicast remote", l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 1, Remote: netip.MustParseAddrPort("[ff02::1]:1701")}, "remote"},
		{"local of the other family", l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 1, Remote: remote, Local: netip.MustParseAddrPort("[fd00::1]:0")}, "local"},
		{"multicast local", l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 1, Remote: remote, Local: netip.MustParseAddrPort("224.0.0.1:0")}, "local"},
		{"negative queue", l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 1, Remote: remote, QueueLen: -1}, "queue length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := l2tp.OpenSocket(st, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, stack.ErrInvalid) || !strings.HasPrefix(err.Error(), tc.field) {
				t.Errorf("error %q: want one naming %q and wrapping stack.ErrInvalid", err, tc.field)
			}
		})
	}
	// Nothing was bound: the default port is free.
	s, err := l2tp.OpenSocket(st, l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 1, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Tunnel().LocalAddr().Port(); got != l2tp.DefaultPort {
		t.Errorf("port %d, want %d", got, l2tp.DefaultPort)
	}
	if got := s.Config().Remote; got != remote {
		t.Errorf("remote %v", got)
	}
}

func TestSessionConfigErrors(t *testing.T) {
	v4 := bareTunnel(t, netip.MustParseAddrPort("10.99.0.2:1701"))
	v6 := bareTunnel(t, netip.MustParseAddrPort("[fd00:99::2]:1701"))
	ok := sessionConfig()
	with := func(f func(c *l2tp.Config)) l2tp.Config {
		c := ok
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name  string
		sock  *l2tp.Socket
		cfg   l2tp.Config
		field string
	}{
		{"session id 0", v4, with(func(c *l2tp.Config) { c.ID = 0 }), "session id"},
		{"peer session id 0", v4, with(func(c *l2tp.Config) { c.PeerID = 0 }), "peer session id"},
		{"cookie of 3 bytes", v4, with(func(c *l2tp.Config) { c.Cookie = []byte{1, 2, 3} }), "cookie"},
		{"cookie of 16 bytes", v4, with(func(c *l2tp.Config) { c.Cookie = make([]byte, 16) }), "cookie"},
		{"peer cookie of 6 bytes", v4, with(func(c *l2tp.Config) { c.PeerCookie = make([]byte, 6) }), "peer cookie"},
		{"unknown l2spec", v4, with(func(c *l2tp.Config) { c.L2Spec = 7 }), "l2spec"},
		{"unknown seq", v4, with(func(c *l2tp.Config) { c.Seq = 9 }), "seq"},
		{"seq without sublayer", v4, with(func(c *l2tp.Config) { c.L2Spec = l2tp.L2SpecNone }), "seq"},
		{"short MAC", v4, with(func(c *l2tp.Config) { c.MAC = []byte{2, 0, 0} }), "mac"},
		{"headroom", v4, with(func(c *l2tp.Config) { c.Headroom = 1 << 20 }), "headroom"},
		{"underlay MTU too small", v4, with(func(c *l2tp.Config) { c.UnderlayMTU = 40 }), "underlay MTU"},
		{"df over IPv6", v6, with(func(c *l2tp.Config) { c.DF = true }), "df"},
		{"df with gso", v4, with(func(c *l2tp.Config) { c.DF, c.GSO, c.ChecksumOffload = true, true, true }), "df with gso"},
		{"gso without checksum offload", v4, with(func(c *l2tp.Config) { c.GSO = true }), "gso"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.sock.AddDevice(nil, tc.cfg)
			if err == nil {
				d.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, stack.ErrInvalid) || !strings.HasPrefix(err.Error(), tc.field) {
				t.Errorf("error %q: want one naming %q and wrapping stack.ErrInvalid", err, tc.field)
			}
			if tc.sock.Device(tc.cfg.ID) != nil {
				t.Error("a failed AddDevice left a session")
			}
			if _, ok := tc.sock.Tunnel().Stack().NICByName("l2tpeth42"); ok {
				t.Error("a failed AddDevice left a NIC")
			}
		})
	}

	// A stack error (a taken name) also leaves nothing.
	if _, err := v4.AddDevice(nil, with(func(c *l2tp.Config) { c.Name = "underlay" })); err == nil {
		t.Fatal("AddDevice with a taken NIC name succeeded")
	}
	if v4.Device(42) != nil {
		t.Error("a failed AddDevice left session 42")
	}

	// The caller's slices are copied.
	cookie := []byte{1, 2, 3, 4}
	d, err := v4.AddDevice(nil, with(func(c *l2tp.Config) { c.Cookie = cookie }))
	if err != nil {
		t.Fatal(err)
	}
	cookie[0] = 9
	if d.Config().Cookie[0] != 1 {
		t.Error("the session shares the caller's cookie slice")
	}
	if d.Name() != "l2tpeth42" || v4.Device(42) != d || d.ID() != 42 {
		t.Errorf("session %q, lookup %v", d.Name(), v4.Device(42))
	}

	// Duplicate session ID.
	if _, err := v4.AddDevice(nil, with(func(c *l2tp.Config) { c.Name = "other" })); !errors.Is(err, stack.ErrExists) || !strings.HasPrefix(err.Error(), "session id") {
		t.Errorf("duplicate session: %v, want session id ... ErrExists", err)
	}
	if _, ok := v4.Tunnel().Stack().NICByName("other"); ok {
		t.Error("a duplicate session left a NIC")
	}
}

// bareTunnel opens a tunnel to remote in a stack of its own that has an
// underlay NIC named "underlay".
func bareTunnel(t *testing.T, remote netip.AddrPort) *l2tp.Socket {
	st := stack.New(stack.Options{})
	t.Cleanup(st.Close)
	if _, err := st.AddNIC(channelEndpoint(), stack.NICOptions{Name: "underlay"}); err != nil {
		t.Fatal(err)
	}
	s, err := l2tp.OpenSocket(st, l2tp.SocketConfig{TunnelID: 1, PeerTunnelID: 2, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
