package geneve_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/geneve"
)

// TestConfigErrors: every bad field is refused with an error that names it
// and wraps stack.ErrInvalid (or ErrExists), and a failed AddDevice leaves
// no NIC and no VNI binding behind.
func TestConfigErrors(t *testing.T) {
	h := newInjectHost(t)
	h.addDevice(t, geneve.Config{VNI: 7, Remote: peer4}) // for the duplicate
	r4, r6 := peer4, peer6
	for _, tc := range []struct {
		name  string
		cfg   geneve.Config
		err   error
		field string
	}{
		{"vni too big", geneve.Config{VNI: geneve.MaxVNI + 1, Remote: r4}, stack.ErrInvalid, "vni"},
		{"no remote", geneve.Config{VNI: 1}, stack.ErrInvalid, "remote"},
		{"unspecified remote", geneve.Config{VNI: 1, Remote: netip.IPv4Unspecified()}, stack.ErrInvalid, "remote"},
		{"multicast remote", geneve.Config{VNI: 1, Remote: netip.MustParseAddr("239.1.1.1")}, stack.ErrInvalid, "remote"},
		{"multicast local", geneve.Config{VNI: 1, Remote: r4, Local: netip.MustParseAddr("224.0.0.1")}, stack.ErrInvalid, "local"},
		{"local family", geneve.Config{VNI: 1, Remote: r4, Local: self6}, stack.ErrInvalid, "local"},
		{"srcport reversed", geneve.Config{VNI: 1, Remote: r4, SrcPortMin: 2000, SrcPortMax: 1000}, stack.ErrInvalid, "srcport"},
		{"srcport from 0", geneve.Config{VNI: 1, Remote: r4, SrcPortMax: 1000}, stack.ErrInvalid, "srcport"},
		{"df unknown", geneve.Config{VNI: 1, Remote: r4, DF: 9}, stack.ErrInvalid, "df"},
		{"df over IPv6", geneve.Config{VNI: 1, Remote: r6, DF: geneve.DFSet}, stack.ErrInvalid, "df"},
		{"df with gso", geneve.Config{VNI: 1, Remote: r4, DF: geneve.DFInherit, GSO: true, ChecksumOffload: true}, stack.ErrInvalid, "df with gso"},
		{"flowlabel too big", geneve.Config{VNI: 1, Remote: r6, FlowLabel: 1 << 20}, stack.ErrInvalid, "flowlabel"},
		{"flowlabel over IPv4", geneve.Config{VNI: 1, Remote: r4, FlowLabel: 5}, stack.ErrInvalid, "flowlabel"},
		{"mac on L3", geneve.Config{VNI: 1, Remote: r4, InnerProtoInherit: true, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, stack.ErrInvalid, "mac"},
		{"multicast mac", geneve.Config{VNI: 1, Remote: r4, MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}, stack.ErrInvalid, "MAC"},
		{"headroom", geneve.Config{VNI: 1, Remote: r4, Headroom: -1}, stack.ErrInvalid, "headroom"},
		{"underlay mtu", geneve.Config{VNI: 1, Remote: r4, UnderlayMTU: 67}, stack.ErrInvalid, "underlay MTU"},
		{"tx options room odd", geneve.Config{VNI: 1, Remote: r4, TxOptionsRoom: 6}, stack.ErrInvalid, "tx options room"},
		{"tx options room too big", geneve.Config{VNI: 1, Remote: r4, TxOptionsRoom: 256}, stack.ErrInvalid, "tx options room"},
		{"tx options malformed", geneve.Config{VNI: 1, Remote: r4, TxOptions: geneve.Options{0, 1, 2, 1}}, stack.ErrInvalid, "tx options"},
		{"tx options odd length", geneve.Config{VNI: 1, Remote: r4, TxOptions: geneve.Options{0, 1, 2}}, stack.ErrInvalid, "tx options"},
		{"tx options beyond room", geneve.Config{VNI: 1, Remote: r4, TxOptions: make(geneve.Options, 8), TxOptionsRoom: 4}, stack.ErrInvalid, "tx options"},
		{"gso without offload", geneve.Config{VNI: 1, Remote: r4, GSO: true}, stack.ErrInvalid, "GSO"},
		{"duplicate vni", geneve.Config{VNI: 7, Remote: r4}, stack.ErrExists, "vni 7"},
		{"duplicate name", geneve.Config{VNI: 1, Remote: r4, Name: "geneve7"}, stack.ErrExists, "geneve7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := h.sock.AddDevice(nil, tc.cfg)
			if !errors.Is(err, tc.err) {
				if d != nil {
					d.Close()
				}
				t.Fatalf("AddDevice = %v, want an error wrapping %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
			if tc.cfg.VNI != 7 && h.sock.Device(tc.cfg.VNI) != nil {
				t.Errorf("VNI %d bound after a failed AddDevice", tc.cfg.VNI)
			}
			if _, ok := h.st.NICByName("geneve1"); ok {
				t.Error("NIC geneve1 left after a failed AddDevice")
			}
		})
	}
	// Metadata mode needs no remote; Transmit then has nowhere to send.
	d, err := h.sock.AddDevice(nil, geneve.Config{VNI: 1, OnReceive: func(geneve.Metadata, []byte) {}})
	if err != nil {
		t.Fatalf("metadata-mode device without remote: %v", err)
	}
	if err := d.SendFrame(geneve.Metadata{}, make([]byte, 14)); !errors.Is(err, stack.ErrNoRemote) {
		t.Errorf("SendFrame without any destination: %v", err)
	}
	if n := d.Counters().Stats().Dropped(stack.DropNoRemote); n != 1 {
		t.Errorf("DropNoRemote counted %d times, want 1", n)
	}
}

// TestSocketConfigErrors: a bad socket configuration fails and leaves the
// port free.
func TestSocketConfigErrors(t *testing.T) {
	h := newInjectHost(t) // holds port 6081
	for _, tc := range []struct {
		name  string
		cfg   geneve.SocketConfig
		err   error
		field string
	}{
		{"port taken", geneve.SocketConfig{}, stack.ErrExists, "6081"},
		{"multicast local", geneve.SocketConfig{Local: netip.MustParseAddrPort("239.1.1.1:6082")}, stack.ErrInvalid, "local"},
		{"unknown NIC", geneve.SocketConfig{Local: netip.MustParseAddrPort("0.0.0.0:6082"), NIC: 99}, stack.ErrNotFound, "NIC 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := geneve.OpenSocket(h.st, tc.cfg)
			if !errors.Is(err, tc.err) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("OpenSocket = %v, want an error wrapping %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
	s, err := geneve.OpenSocket(h.st, geneve.SocketConfig{Local: netip.MustParseAddrPort("0.0.0.0:6082")})
	if err != nil {
		t.Fatalf("port 6082 after failed opens: %v", err)
	}
	s.Close()
}
