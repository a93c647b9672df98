package fou_test

// Bad configuration is an error that wraps a sentinel, names the field and
// leaves nothing behind.

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

func TestConfigErrors(t *testing.T) {
	r4, r6 := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("fd00::1")
	for _, tc := range []struct {
		name  string
		sock  fou.SocketConfig
		cfg   fou.Config
		err   error
		field string // the error names it
	}{
		{name: "no remote", cfg: fou.Config{}, err: stack.ErrInvalid, field: "remote"},
		{name: "unspecified remote", cfg: fou.Config{Remote: netip.IPv4Unspecified()}, err: stack.ErrInvalid, field: "remote"},
		{name: "multicast remote", cfg: fou.Config{Remote: netip.MustParseAddr("239.1.1.1")}, err: stack.ErrInvalid, field: "remote"},
		{name: "multicast local", cfg: fou.Config{Remote: r4, Local: netip.MustParseAddr("224.0.0.1")}, err: stack.ErrInvalid, field: "local"},
		{name: "unspecified IPv6 local", cfg: fou.Config{Remote: r6, Local: netip.IPv6Unspecified()}, err: stack.ErrInvalid, field: "local"},
		{name: "local and remote of two families", cfg: fou.Config{Remote: r6, Local: netip.MustParseAddr("10.99.0.2")}, err: stack.ErrInvalid, field: "local 10.99.0.2"},
		{name: "unknown proto", cfg: fou.Config{Remote: r4, Proto: 17}, err: stack.ErrInvalid, field: "proto"},
		{name: "key on IPIP", sock: fou.SocketConfig{Proto: fou.ProtoIPIP}, cfg: fou.Config{Remote: r4, HasKey: true}, err: stack.ErrInvalid, field: "key"},
		{name: "key on GUE", sock: fou.SocketConfig{Type: fou.TypeGUE}, cfg: fou.Config{Remote: r4, Key: 5}, err: stack.ErrInvalid, field: "key"},
		{name: "GRE checksum on IPv6 tunnel", sock: fou.SocketConfig{Proto: fou.ProtoIPv6}, cfg: fou.Config{Remote: r4, GRECsum: true}, err: stack.ErrInvalid, field: "gre csum"},
		{name: "negative headroom", cfg: fou.Config{Remote: r4, Headroom: -1}, err: stack.ErrInvalid, field: "headroom"},
		{name: "headroom too large", cfg: fou.Config{Remote: r4, Headroom: 65530}, err: stack.ErrInvalid, field: "headroom 65530"},
		{name: "underlay MTU too small", cfg: fou.Config{Remote: r4, UnderlayMTU: 67}, err: stack.ErrInvalid, field: "underlay MTU"},
		{name: "underlay MTU too large", cfg: fou.Config{Remote: r4, UnderlayMTU: 70000}, err: stack.ErrInvalid, field: "underlay MTU 70000"},
		{name: "MTU too small", cfg: fou.Config{Remote: r4, MTU: 10}, err: stack.ErrInvalid, field: "MTU 10"},
		{name: "DF over IPv6", cfg: fou.Config{Remote: r6, DF: true}, err: stack.ErrInvalid, field: "df"},
		{name: "GSO without checksum offload", cfg: fou.Config{Remote: r4, GSO: true}, err: stack.ErrInvalid, field: "gso"},
		{name: "DF with GSO", cfg: fou.Config{Remote: r4, DF: true, GSO: true, ChecksumOffload: true}, err: stack.ErrInvalid, field: "df with gso"},
		{name: "duplicate tunnel", cfg: fou.Config{Remote: netip.MustParseAddr("10.99.0.7")}, err: stack.ErrExists, field: "remote 10.99.0.7"},
		{name: "duplicate tunnel, IPv4-mapped", cfg: fou.Config{Remote: netip.MustParseAddr("::ffff:10.99.0.7")}, err: stack.ErrExists, field: "remote 10.99.0.7"},
		{name: "NIC name taken", cfg: fou.Config{Name: "underlay", Remote: r4}, err: stack.ErrExists, field: `"underlay"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := tunneltest.NewStack(t, channel.New(4, 1500, ""), netip.MustParsePrefix("10.99.0.2/24"))
			sc := tc.sock
			if sc == (fou.SocketConfig{}) {
				sc.Proto = fou.ProtoIPIP
			}
			s, err := fou.OpenSocket(st, sc)
			if err != nil {
				t.Fatal(err)
			}
			existing, err := s.AddDevice(nil, fou.Config{Remote: netip.MustParseAddr("10.99.0.7")})
			if err != nil {
				t.Fatal(err)
			}
			nics := len(st.GVisor().NICInfo())
			d, err := s.AddDevice(nil, tc.cfg)
			if !errors.Is(err, tc.err) {
				t.Fatalf("AddDevice(%+v) = %v, want %v", tc.cfg, err, tc.err)
			}
			if d != nil {
				t.Errorf("AddDevice returned a device with its error")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
			if n := len(st.GVisor().NICInfo()); n != nics {
				t.Errorf("%d NICs after the failed AddDevice, want %d", n, nics)
			}
			// The failed device left no binding: the existing tunnel
			// still owns its pair, and a new valid device can be added.
			if _, err := s.AddDevice(nil, fou.Config{Remote: netip.MustParseAddr("10.99.0.7")}); !errors.Is(err, stack.ErrExists) {
				t.Errorf("the existing device lost its binding: %v", err)
			}
			if _, err := s.AddDevice(nil, fou.Config{Remote: netip.MustParseAddr("10.99.0.8")}); err != nil {
				t.Errorf("a valid device after the failed one: %v", err)
			}
			_ = existing
		})
	}
}

func TestSocketConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sc    fou.SocketConfig
		err   error
		field string
	}{
		{"FOU without protocol", fou.SocketConfig{}, stack.ErrInvalid, "proto"},
		{"FOU for UDP", fou.SocketConfig{Proto: 17}, stack.ErrInvalid, "proto"},
		{"GUE with a protocol", fou.SocketConfig{Type: fou.TypeGUE, Proto: fou.ProtoIPIP}, stack.ErrInvalid, "proto"},
		{"unknown type", fou.SocketConfig{Type: 9, Proto: fou.ProtoIPIP}, stack.ErrInvalid, "type"},
		{"port taken", fou.SocketConfig{Type: fou.TypeGUE}, stack.ErrExists, "gue socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := stack.New(stack.Options{})
			defer st.Close()
			first, err := fou.OpenSocket(st, fou.SocketConfig{Type: fou.TypeGUE})
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			s, err := fou.OpenSocket(st, tc.sc)
			if !errors.Is(err, tc.err) || s != nil {
				t.Fatalf("OpenSocket(%+v) = %v, %v; want %v", tc.sc, s, err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
			// A failed open leaves the handlers as they were: closing the
			// first socket releases them all.
			first.Close()
			for _, p := range []fou.Proto{fou.ProtoIPIP, fou.ProtoIPv6, fou.ProtoGRE} {
				if h := fou.HandlerOf(st, p); h != nil {
					t.Errorf("handler for %v still there after the last socket closed", p)
				}
			}
		})
	}
}
