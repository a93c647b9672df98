package vxlan_test

// Bad configuration is an error that wraps a sentinel, names the field and
// leaves nothing behind.

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

func TestConfigErrors(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("fd00::1")
	for _, tc := range []struct {
		name  string
		cfg   vxlan.Config // Name is set to "bad" unless given
		err   error
		field string // the error names it
	}{
		{name: "VNI above 24 bits", cfg: vxlan.Config{VNI: vxlan.MaxVNI + 1}, err: stack.ErrInvalid, field: "vni 16777216"},
		{name: "multicast local", cfg: vxlan.Config{VNI: 7, Local: netip.MustParseAddr("239.1.1.1")}, err: stack.ErrInvalid, field: "local"},
		{name: "unspecified IPv4 local", cfg: vxlan.Config{VNI: 7, Local: netip.IPv4Unspecified()}, err: stack.ErrInvalid, field: "local"},
		{name: "unspecified IPv6 local", cfg: vxlan.Config{VNI: 7, Local: netip.IPv6Unspecified()}, err: stack.ErrInvalid, field: "local"},
		{name: "multicast IPv6 local", cfg: vxlan.Config{VNI: 7, Local: netip.MustParseAddr("ff02::1")}, err: stack.ErrInvalid, field: "local"},
		{name: "source ports reversed", cfg: vxlan.Config{VNI: 7, SrcPortMin: 2000, SrcPortMax: 1000}, err: stack.ErrInvalid, field: "srcport"},
		{name: "source ports equal", cfg: vxlan.Config{VNI: 7, SrcPortMin: 2000, SrcPortMax: 2000}, err: stack.ErrInvalid, field: "srcport"},
		{name: "negative max entries", cfg: vxlan.Config{VNI: 7, MaxEntries: -1}, err: stack.ErrInvalid, field: "max entries"},
		{name: "negative headroom", cfg: vxlan.Config{VNI: 7, Headroom: -1}, err: stack.ErrInvalid, field: "headroom"},
		{name: "DF with IPv6 local", cfg: vxlan.Config{VNI: 7, DF: true, Local: netip.MustParseAddr("fd00::2")}, err: stack.ErrInvalid, field: "df"},
		{name: "IPv6 remote, IPv4 local", cfg: vxlan.Config{VNI: 7, Local: netip.MustParseAddr("10.99.0.2"), Remotes: []netip.Addr{v4, v6}}, err: stack.ErrInvalid, field: "remotes[1]"},
		{name: "IPv4 remote, IPv6 local", cfg: vxlan.Config{VNI: 7, Local: netip.MustParseAddr("fd00::2"), Remotes: []netip.Addr{v4}}, err: stack.ErrInvalid, field: "remotes[0]"},
		{name: "unspecified remote", cfg: vxlan.Config{VNI: 7, Remotes: []netip.Addr{v4, netip.IPv4Unspecified()}}, err: stack.ErrInvalid, field: "remotes[1]"},
		{name: "zero remote", cfg: vxlan.Config{VNI: 7, Remotes: []netip.Addr{{}}}, err: stack.ErrInvalid, field: "remotes[0]"},
		{name: "multicast MAC", cfg: vxlan.Config{VNI: 7, MAC: net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}}, err: stack.ErrInvalid, field: "MAC"},
		{name: "zero MAC", cfg: vxlan.Config{VNI: 7, MAC: make(net.HardwareAddr, 6)}, err: stack.ErrInvalid, field: "MAC"},
		{name: "short MAC", cfg: vxlan.Config{VNI: 7, MAC: net.HardwareAddr{2, 0, 0}}, err: stack.ErrInvalid, field: "MAC"},
		{name: "MTU below 68", cfg: vxlan.Config{VNI: 7, MTU: 67}, err: stack.ErrInvalid, field: "MTU"},
		{name: "underlay MTU too small", cfg: vxlan.Config{VNI: 7, UnderlayMTU: 100}, err: stack.ErrInvalid, field: "underlay MTU"},
		{name: "source port range from 0", cfg: vxlan.Config{VNI: 7, SrcPortMin: 0, SrcPortMax: 2}, err: stack.ErrInvalid, field: "srcport 0-2"},
		{name: "headroom too large", cfg: vxlan.Config{VNI: 7, Headroom: 65530}, err: stack.ErrInvalid, field: "headroom 65530"},
		{name: "underlay MTU too large", cfg: vxlan.Config{VNI: 7, UnderlayMTU: 70000}, err: stack.ErrInvalid, field: "underlay MTU 70000"},
		{name: "DF with GSO", cfg: vxlan.Config{VNI: 7, DF: true, GSO: true, ChecksumOffload: true}, err: stack.ErrInvalid, field: "df with gso"},
		{name: "DF with an IPv6 remote", cfg: vxlan.Config{VNI: 7, DF: true, Remotes: []netip.Addr{v6}}, err: stack.ErrInvalid, field: "df with remotes[0]"},
		{name: "GSO without checksum offload", cfg: vxlan.Config{VNI: 7, GSO: true}, err: stack.ErrInvalid, field: "GSO"},
		{name: "remotes of two families", cfg: vxlan.Config{VNI: 7, Remotes: []netip.Addr{v4, v6}}, err: stack.ErrInvalid, field: "remotes[1]"},
		{name: "flow label above 20 bits", cfg: vxlan.Config{VNI: 7, FlowLabel: 0x100000}, err: stack.ErrInvalid, field: "flowlabel 0x100000"},
		{name: "flow label with IPv4 local", cfg: vxlan.Config{VNI: 7, FlowLabel: 5, Local: netip.MustParseAddr("10.99.0.2")}, err: stack.ErrInvalid, field: "flowlabel"},
		{name: "duplicate VNI on the socket", cfg: vxlan.Config{VNI: 42}, err: stack.ErrExists, field: "vni 42"},
		{name: "NIC name taken", cfg: vxlan.Config{Name: "underlay", VNI: 7}, err: stack.ErrExists, field: `"underlay"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t, channelEndpoint(), netip.MustParsePrefix("10.99.0.2/24"))
			existing := h.addDevice(t, vxlan.Config{VNI: 42, Remotes: []netip.Addr{v4}})
			nics := len(h.st.GVisor().NICInfo())
			cfg := tc.cfg
			if cfg.Name == "" {
				cfg.Name = "bad"
			}
			dev, err := h.sock.AddDevice(nil, cfg)
			if !errors.Is(err, tc.err) {
				t.Fatalf("AddDevice(%+v) = %v, want an error wrapping %v", cfg, err, tc.err)
			}
			if dev != nil {
				t.Errorf("AddDevice returned device %v with error %v", dev.Name(), err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name the field %q", err, tc.field)
			}
			// Nothing half-made: no new NIC, the VNI keeps its device (or
			// none), and the socket still works for a new valid device.
			if _, ok := h.st.NICByName("bad"); ok {
				t.Errorf("NIC %q exists after a failed AddDevice", "bad")
			}
			if got := len(h.st.GVisor().NICInfo()); got != nics {
				t.Errorf("%d NICs after a failed AddDevice, want %d", got, nics)
			}
			if got := h.sock.Device(42); got != existing {
				t.Errorf("VNI 42 maps to %v, want the existing device", got)
			}
			if cfg.VNI.Valid() && cfg.VNI != 42 {
				if got := h.sock.Device(cfg.VNI); got != nil {
					t.Errorf("VNI %d maps to device %s after a failed AddDevice", cfg.VNI, got.Name())
				}
				d, err := h.sock.AddDevice(nil, vxlan.Config{Name: "good", VNI: cfg.VNI})
				if err != nil {
					t.Fatalf("valid AddDevice after the failure: %v", err)
				}
				if h.sock.Device(cfg.VNI) != d {
					t.Errorf("VNI %d does not map to the new device", cfg.VNI)
				}
			}
		})
	}
}

// TestSocketConfigErrors: a bad socket configuration fails and leaves the
// port free.
func TestSocketConfigErrors(t *testing.T) {
	h := bareHost(t) // holds port 4789
	for _, tc := range []struct {
		name  string
		cfg   vxlan.SocketConfig
		err   error
		field string
	}{
		{"port taken", vxlan.SocketConfig{}, stack.ErrExists, "port 4789"},
		{"multicast local", vxlan.SocketConfig{Local: netip.MustParseAddrPort("239.1.1.1:4790")}, stack.ErrInvalid, "local address"},
		{"unknown NIC", vxlan.SocketConfig{Local: netip.MustParseAddrPort("0.0.0.0:4790"), NIC: 99}, stack.ErrNotFound, "NIC 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := vxlan.OpenSocket(h.st, tc.cfg)
			if !errors.Is(err, tc.err) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("OpenSocket(%+v) = %v, want an error wrapping %v", tc.cfg, err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
	// None of the failures kept port 4790.
	s, err := vxlan.OpenSocket(h.st, vxlan.SocketConfig{Local: netip.MustParseAddrPort("0.0.0.0:4790")})
	if err != nil {
		t.Fatalf("port 4790 after failed opens: %v", err)
	}
	s.Close()
}
