package stack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// ping pings dst from h and fails the test on error.
func ping(tb testing.TB, h *peerHost, dst netip.Addr) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for seq := uint16(1); seq <= 3; seq++ {
		if _, err := h.st.Ping(ctx, dst, seq, 56); err != nil {
			tb.Fatalf("ping %v seq %d: %v", dst, seq, err)
		}
	}
}

// transfer moves n bytes over TCP from a to b at dst and compares their
// SHA-256 digests (e2e.TransferTCP).
func transfer(tb testing.TB, a, b *peerHost, dst netip.Addr, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e2e.TransferTCP(ctx, a.st, b.st, netip.AddrPortFrom(dst, 5001), int64(n), nil); err != nil {
		tb.Fatal(err)
	}
}

func TestDeviceCarriesPingAndTCP(t *testing.T) {
	gso := func(c *stack.DeviceConfig) { c.GSO, c.ChecksumOffload = true, true }
	for _, tc := range []struct {
		name   string
		layer  stack.Layer
		outer6 bool
		opts   memlink.Options
		dev    func(*stack.DeviceConfig)
	}{
		{"L3 over ipv4", stack.L3, false, memlink.Options{}, nil},
		{"L3 over ipv6", stack.L3, true, memlink.Options{}, nil},
		{"L2 over ipv4", stack.L2, false, memlink.Options{}, nil},
		{"L2 over ipv6", stack.L2, true, memlink.Options{}, nil},
		{"L3 over ipv4 sync", stack.L3, false, memlink.Options{Sync: true}, nil},
		{"L2 over ipv6 jumbo", stack.L2, true, memlink.Options{MTU: 9000}, nil},
		{"L3 GSO over a GSO wire", stack.L3, false, memlink.Options{GSO: true, ChecksumOffload: true}, gso},
		{"L2 GSO over a GSO ipv6 wire", stack.L2, true, memlink.Options{GSO: true, ChecksumOffload: true}, gso},
		// The outer NIC cannot take super-packets: Xmit drops the GSO mark
		// and the outer IP layer fragments them.
		{"L3 GSO over a plain wire", stack.L3, false, memlink.Options{}, gso},
		{"L2 GSO over a plain ipv6 wire", stack.L2, true, memlink.Options{}, gso},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newPeerPair(t, tc.opts, tc.outer6, tc.layer, tc.dev)
			for i, fam := range []string{"inner ipv4", "inner ipv6"} {
				t.Run(fam, func(t *testing.T) {
					ping(t, hs[0], hs[1].inner[i])
					ping(t, hs[1], hs[0].inner[i])
					transfer(t, hs[0], hs[1], hs[1].inner[i], 1<<20)
				})
			}
			for i, h := range hs {
				// A segment (an ACK, a FIN) may still be on its way
				// through the device on a stack goroutine: the socket
				// counts it inside Xmit, the device when Xmit returns.
				// Wait for the two to agree; a real mismatch persists.
				var ds, ss stack.Stats
				for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
					ds, ss = h.dev.Counters().Stats(), h.tt.sock.Counters().Stats()
					if (ss.TxPackets == ds.TxPackets && ss.RxPackets == ds.RxPackets) || time.Now().After(deadline) {
						break
					}
				}
				if ds.TotalDrops() != 0 || ss.TotalDrops() != 0 {
					t.Errorf("host %d: drops on the device (%v) or the socket (%v)", i, ds, ss)
				}
				if ds.TxPackets == 0 || ds.RxPackets == 0 || ss.TxPackets != ds.TxPackets || ss.RxPackets != ds.RxPackets {
					t.Errorf("host %d: device %v and socket %v disagree", i, ds, ss)
				}
			}
		})
	}
}

// TestDeviceOverOffloadingUnderlay runs the tunnel over a memlink wire
// that advertises checksum offload, as a veth does: the outer checksum is
// then left to the "hardware" and must not be refused on receive.
func TestDeviceOverOffloadingUnderlay(t *testing.T) {
	for _, outer6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("outer ipv6=%v", outer6), func(t *testing.T) {
			hs := newPeerPair(t, memlink.Options{ChecksumOffload: true}, outer6, stack.L3, nil)
			ping(t, hs[0], hs[1].inner[0])
			transfer(t, hs[0], hs[1], hs[1].inner[0], 256<<10)
		})
	}
}

func TestDeviceMTU(t *testing.T) {
	tests := []struct {
		name string
		cfg  stack.DeviceConfig
		want uint32
	}{
		{"L3 over ipv4", stack.DeviceConfig{Layer: stack.L3, EncapLen: 16}, 1500 - 20 - 16},
		{"L3 over ipv6", stack.DeviceConfig{Layer: stack.L3, EncapLen: 16, OuterIPv6: true}, 1500 - 40 - 16},
		{"L2 over ipv4", stack.DeviceConfig{Layer: stack.L2, EncapLen: 16}, 1500 - 20 - 16 - 14},
		{"L2 over ipv6", stack.DeviceConfig{Layer: stack.L2, EncapLen: 16, OuterIPv6: true}, 1500 - 40 - 16 - 14},
		{"L2 jumbo underlay", stack.DeviceConfig{Layer: stack.L2, EncapLen: 8, UnderlayMTU: 9000}, 9000 - 20 - 8 - 14},
		{"configured", stack.DeviceConfig{Layer: stack.L2, EncapLen: 16, MTU: 1300}, 1300},
		{"configured above underlay", stack.DeviceConfig{Layer: stack.L3, EncapLen: 16, MTU: 9000}, 9000},
		{"smallest underlay", stack.DeviceConfig{Layer: stack.L3, EncapLen: 8, UnderlayMTU: 68 + 28}, 68},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStack(t)
			tt.cfg.Name = "dev"
			d, err := stack.NewDevice(st, tt.cfg, &captureTx{})
			if err != nil {
				t.Fatalf("NewDevice: %v", err)
			}
			if got := d.InnerMTU(); got != tt.want {
				t.Errorf("InnerMTU = %d, want %d", got, tt.want)
			}
			// What the inner stack sees: the NIC's MTU is the IP MTU for
			// both layers (gVisor's Ethernet wrapper takes its 14 off).
			if got := st.GVisor().NICInfo()[d.NIC()].MTU; got != tt.want {
				t.Errorf("NIC MTU = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNewDeviceErrors(t *testing.T) {
	tests := []struct {
		name  string
		cfg   stack.DeviceConfig
		nilTx bool
		want  error
		field string
	}{
		{"no name", stack.DeviceConfig{EncapLen: 16}, false, stack.ErrInvalid, "name"},
		{"nil transmitter", stack.DeviceConfig{Name: "d", EncapLen: 16}, true, stack.ErrInvalid, "transmitter"},
		{"bad layer", stack.DeviceConfig{Name: "d", Layer: 7, EncapLen: 16}, false, stack.ErrInvalid, "layer"},
		{"encap below UDP", stack.DeviceConfig{Name: "d", EncapLen: 7}, false, stack.ErrInvalid, "encapsulation length"},
		{"GSO without checksum offload", stack.DeviceConfig{Name: "d", EncapLen: 16, GSO: true}, false, stack.ErrInvalid, "GSO"},
		{"negative headroom", stack.DeviceConfig{Name: "d", EncapLen: 16, Headroom: -1}, false, stack.ErrInvalid, "headroom"},
		{"underlay too small", stack.DeviceConfig{Name: "d", EncapLen: 16, UnderlayMTU: 100}, false, stack.ErrInvalid, "underlay MTU"},
		{"MTU too small", stack.DeviceConfig{Name: "d", EncapLen: 16, MTU: 67}, false, stack.ErrInvalid, "MTU 67"},
		{"MTU too large", stack.DeviceConfig{Name: "d", EncapLen: 16, MTU: 65536}, false, stack.ErrInvalid, "MTU 65536"},
		{"multicast MAC", stack.DeviceConfig{Name: "d", Layer: stack.L2, EncapLen: 16, MAC: net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}}, false, stack.ErrInvalid, "MAC"},
		{"zero MAC", stack.DeviceConfig{Name: "d", Layer: stack.L2, EncapLen: 16, MAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}}, false, stack.ErrInvalid, "MAC"},
		{"short MAC", stack.DeviceConfig{Name: "d", Layer: stack.L2, EncapLen: 16, MAC: net.HardwareAddr{2, 0, 0, 0, 1}}, false, stack.ErrInvalid, "MAC"},
		{"L3 with MAC", stack.DeviceConfig{Name: "d", Layer: stack.L3, EncapLen: 16, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}, false, stack.ErrInvalid, "MAC"},
		{"name taken", stack.DeviceConfig{Name: "underlay", EncapLen: 16}, false, stack.ErrExists, "underlay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			before := len(h.st.GVisor().NICInfo())
			var tx stack.Transmitter = &captureTx{}
			if tt.nilTx {
				tx = nil
			}
			d, err := stack.NewDevice(h.st, tt.cfg, tx)
			if err == nil {
				d.Close()
				t.Fatalf("NewDevice(%+v) succeeded", tt.cfg)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name the field %q", err, tt.field)
			}
			if got := len(h.st.GVisor().NICInfo()); got != before {
				t.Errorf("%d NICs after a failed NewDevice, want %d", got, before)
			}
			if _, ok := h.st.NICByName("d"); ok {
				t.Errorf("a failed NewDevice left its NIC")
			}
		})
	}
}

func TestDeviceUpdatePathMTU(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     stack.DeviceConfig
		updates []uint32
		want    []uint32 // InnerMTU after each update
	}{
		{
			name:    "L3 derived",
			cfg:     stack.DeviceConfig{Layer: stack.L3, EncapLen: 16},
			updates: []uint32{1400, 1450, 1500, 1300, 1300},
			want:    []uint32{1364, 1364, 1364, 1280, 1280},
		},
		{
			name:    "L2 ipv6 derived",
			cfg:     stack.DeviceConfig{Layer: stack.L2, EncapLen: 16, OuterIPv6: true},
			updates: []uint32{1400, 1280, 9000},
			want:    []uint32{1400 - 40 - 16 - 14, 1280, 1280},
		},
		{
			// A forged or broken ICMP error must not take inner IPv6
			// (minimum MTU 1280) down with it.
			name:    "never below 1280",
			cfg:     stack.DeviceConfig{Layer: stack.L3, EncapLen: 16},
			updates: []uint32{100, 0},
			want:    []uint32{1280, 1280},
		},
		{
			name:    "nor below a smaller derived MTU",
			cfg:     stack.DeviceConfig{Layer: stack.L3, EncapLen: 16, UnderlayMTU: 1000},
			updates: []uint32{900, 100},
			want:    []uint32{864, 68},
		},
		{
			name:    "configured MTU ignores path MTU",
			cfg:     stack.DeviceConfig{Layer: stack.L3, EncapLen: 16, MTU: 1400},
			updates: []uint32{1000, 600},
			want:    []uint32{1400, 1400},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStack(t)
			tc.cfg.Name = "dev"
			d, err := stack.NewDevice(st, tc.cfg, &captureTx{})
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range tc.updates {
				d.UpdatePathMTU(u)
				if got := d.InnerMTU(); got != tc.want[i] {
					t.Errorf("after UpdatePathMTU(%d): InnerMTU = %d, want %d", u, got, tc.want[i])
				}
				if got := st.GVisor().NICInfo()[d.NIC()].MTU; got != tc.want[i] {
					t.Errorf("after UpdatePathMTU(%d): NIC MTU = %d, want %d", u, got, tc.want[i])
				}
			}
		})
	}
}

// captureTx is a Transmitter that records what the inner stack hands the
// device and returns err.
type captureTx struct {
	err error

	mu   sync.Mutex
	seen []txSeen
}

type txSeen struct {
	proto         tcpip.NetworkProtocolNumber
	link, network []byte
	available     int
	depth         int
}

func (c *captureTx) Transmit(pkt *stack.PacketBuffer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, txSeen{
		proto:     pkt.NetworkProtocolNumber,
		link:      append([]byte(nil), pkt.LinkHeader().Slice()...),
		network:   append([]byte(nil), pkt.NetworkHeader().Slice()...),
		available: pkt.AvailableHeaderBytes(),
		depth:     stack.NestingDepth(pkt),
	})
	return c.err
}

func (c *captureTx) packets() []txSeen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]txSeen(nil), c.seen...)
}

// TestDeviceTransmitHeadroom checks the zero-copy invariant: because the
// device's MaxHeaderLength includes its encapsulation, the inner stack
// leaves that much headroom in front of every packet it writes.
func TestDeviceTransmitHeadroom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		layer stack.Layer
	}{{"L3", stack.L3}, {"L2", stack.L2}} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStack(t)
			tx := &captureTx{}
			mac := net.HardwareAddr{2, 0, 0, 0, 0, 7}
			cfg := stack.DeviceConfig{Name: "dev", Layer: tc.layer, EncapLen: 24, Headroom: 100}
			if tc.layer == stack.L2 {
				cfg.MAC = mac
			}
			d, err := stack.NewDevice(st, cfg, tx)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("10.7.0.1/24")); err != nil {
				t.Fatal(err)
			}
			c, err := st.DialUDP(netip.MustParseAddrPort("10.7.0.2:9"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("hello"))
			// An L2 device resolves the neighbour first; gVisor may send
			// the ARP request from a timer.
			seen := tx.packets()
			for deadline := time.Now().Add(2 * time.Second); len(seen) == 0 && time.Now().Before(deadline); seen = tx.packets() {
				time.Sleep(time.Millisecond)
			}
			if len(seen) == 0 {
				t.Fatal("the transmitter saw nothing")
			}
			p := seen[0]
			if p.available < 24+100 {
				t.Errorf("%d bytes of headroom, want at least EncapLen+Headroom = 124", p.available)
			}
			if p.depth != 0 {
				t.Errorf("NestingDepth of an application packet = %d", p.depth)
			}
			switch tc.layer {
			case stack.L3:
				if p.proto != header.IPv4ProtocolNumber || len(p.network) < header.IPv4MinimumSize || len(p.link) != 0 {
					t.Errorf("L3 packet: proto %d, network header %d bytes, link header %d bytes", p.proto, len(p.network), len(p.link))
				} else if got := addrOf(header.IPv4(p.network).DestinationAddress()); got != netip.MustParseAddr("10.7.0.2") {
					t.Errorf("inner destination %v", got)
				}
			case stack.L2:
				// The first frame is the ARP request for 10.7.0.2.
				eth := header.Ethernet(p.link)
				if len(p.link) != header.EthernetMinimumSize || eth.SourceAddress() != tcpip.LinkAddress(mac) || eth.DestinationAddress() != header.EthernetBroadcastAddress || eth.Type() != header.ARPProtocolNumber {
					t.Errorf("L2 frame: link header % x, want an ARP broadcast from %v", p.link, mac)
				}
				if !bytes.Equal(d.MAC(), mac) {
					t.Errorf("MAC() = %v, want %v", d.MAC(), mac)
				}
			}
		})
	}
}

func TestDeviceTransmitErrorsCounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want stack.DropReason
	}{
		{"no remote", stack.ErrNoRemote, stack.DropNoRemote},
		{"no route", fmt.Errorf("route: %w", stack.ErrNoRoute), stack.DropNoRoute},
		{"too big", &stack.TooBigError{MTU: 1400}, stack.DropTooBig},
		{"loop", stack.ErrLoop, stack.DropLoop},
		{"nesting", stack.ErrNestingLimit, stack.DropNestingLimit},
		{"closed", stack.ErrClosed, stack.DropDeviceDown},
		{"invalid", stack.ErrInvalid, stack.DropBadHeader},
		{"unsupported", fmt.Errorf("ipv6 on an ipv4 device: %w", stack.ErrUnsupported), stack.DropNotForUs},
		{"other", errors.New("boom"), stack.DropWriteError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stack.DropReasonOf(tc.err); got != tc.want {
				t.Errorf("DropReasonOf(%v) = %v, want %v", tc.err, got, tc.want)
			}
			st := newStack(t)
			d, err := stack.NewDevice(st, stack.DeviceConfig{Name: "dev", EncapLen: 16}, &captureTx{err: tc.err})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("10.7.0.1/24")); err != nil {
				t.Fatal(err)
			}
			c, err := st.DialUDP(netip.MustParseAddrPort("10.7.0.2:9"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for range 3 {
				c.Write([]byte("x"))
			}
			s := d.Counters().Stats()
			if s.Dropped(tc.want) != 3 || s.TotalDrops() != 3 || s.TxPackets != 0 {
				t.Errorf("counters %v, want exactly 3 %v drops", s, tc.want)
			}
		})
	}
}

// TestDeviceRouteLoop gives a TT device a remote inside its own subnet: the
// outer route leaves through the device itself and must be refused.
func TestDeviceRouteLoop(t *testing.T) {
	st := newStack(t)
	tt := openTT(t, st, stack.SocketConfig{})
	d := tt.addDevice(t, st, ttConfig{ID: 3, Remote: netip.MustParseAddrPort("10.3.0.99:7777")})
	if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("10.3.0.1/24")); err != nil {
		t.Fatal(err)
	}
	c, err := st.DialUDP(netip.MustParseAddrPort("10.3.0.2:9"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("loop"))
	if s := d.Counters().Stats(); s.Dropped(stack.DropLoop) != 1 || s.TxPackets != 0 {
		t.Errorf("device counters %v, want 1 loop drop", s)
	}
	if s := tt.sock.Counters().Stats(); s.Dropped(stack.DropLoop) != 1 || s.TxPackets != 0 {
		t.Errorf("socket counters %v, want 1 loop drop", s)
	}
}

// ipv4UDP is an inner IPv4/UDP packet from 10.7.0.2:1000 to 10.7.0.1:port.
func ipv4UDP(port uint16, payload []byte) []byte {
	return udpPacket(netip.MustParseAddrPort("10.7.0.2:1000"), netip.AddrPortFrom(netip.MustParseAddr("10.7.0.1"), port), payload, csumGood)
}

func ethFrame(dst, src net.HardwareAddr, typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(src), DstAddr: tcpip.LinkAddress(dst), Type: typ})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

func TestDeviceDeliver(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	peerMAC := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	otherMAC := net.HardwareAddr{2, 0, 0, 0, 0, 3}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcast := net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 1}
	payload := pattern(50, 4)
	tests := []struct {
		name   string
		layer  stack.Layer
		frame  []byte
		drop   stack.DropReason
		accept bool // delivered: counted as Rx and read by the UDP socket
	}{
		{"L3 ipv4", stack.L3, ipv4UDP(9, payload), 0, true},
		{"L3 empty", stack.L3, nil, stack.DropTruncated, false},
		{"L3 version 5", stack.L3, append([]byte{0x50}, ipv4UDP(9, payload)[1:]...), stack.DropNotForUs, false},
		{"L3 version 0", stack.L3, make([]byte, 40), stack.DropNotForUs, false},
		{"L2 unicast to us", stack.L2, ethFrame(mac, peerMAC, header.IPv4ProtocolNumber, ipv4UDP(9, payload)), 0, true},
		{"L2 truncated", stack.L2, ethFrame(mac, peerMAC, header.IPv4ProtocolNumber, nil)[:13], stack.DropTruncated, false},
		{"L2 for another MAC", stack.L2, ethFrame(otherMAC, peerMAC, header.IPv4ProtocolNumber, ipv4UDP(9, payload)), stack.DropNotForUs, false},
		{"L2 own source MAC", stack.L2, ethFrame(mac, mac, header.IPv4ProtocolNumber, ipv4UDP(9, payload)), stack.DropLoop, false},
		{"L2 own source MAC broadcast", stack.L2, ethFrame(bcast, mac, header.IPv4ProtocolNumber, ipv4UDP(9, payload)), stack.DropLoop, false},
		{"L2 broadcast", stack.L2, ethFrame(bcast, peerMAC, header.IPv4ProtocolNumber, ipv4UDP(9, payload)), 0, true},
		{"L2 multicast", stack.L2, ethFrame(mcast, peerMAC, header.IPv4ProtocolNumber, ipv4UDP(9, payload)), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newStack(t)
			cfg := stack.DeviceConfig{Name: "dev", Layer: tt.layer, EncapLen: 16}
			if tt.layer == stack.L2 {
				cfg.MAC = mac
			}
			d, err := stack.NewDevice(st, cfg, &captureTx{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("10.7.0.1/24")); err != nil {
				t.Fatal(err)
			}
			pc, err := st.ListenUDP(netip.MustParseAddrPort("10.7.0.1:9"))
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()

			pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), tt.frame...))})
			d.Deliver(pkt)
			pkt.DecRef()

			s := d.Counters().Stats()
			if !tt.accept {
				if s.Dropped(tt.drop) != 1 || s.TotalDrops() != 1 || s.RxPackets != 0 {
					t.Errorf("counters %v, want exactly one %v drop", s, tt.drop)
				}
			} else if s.RxPackets != 1 || s.RxBytes != uint64(len(tt.frame)) || s.TotalDrops() != 0 {
				t.Errorf("counters %v, want 1 packet of %d bytes and no drop", s, len(tt.frame))
			}
			pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			buf := make([]byte, 100)
			n, _, err := pc.ReadFrom(buf)
			switch {
			case tt.accept && (err != nil || !bytes.Equal(buf[:n], payload)):
				t.Errorf("inner socket read %q, %v; want the delivered payload", buf[:n], err)
			case !tt.accept && err == nil:
				t.Errorf("inner socket read %d bytes of a frame that should not arrive", n)
			}
		})
	}
}

func TestDeviceClose(t *testing.T) {
	for _, layer := range []stack.Layer{stack.L3, stack.L2} {
		t.Run(layer.String(), func(t *testing.T) {
			st := newStack(t)
			d, err := stack.NewDevice(st, stack.DeviceConfig{Name: "dev", Layer: layer, EncapLen: 16}, &captureTx{})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.AddAddress(d.NIC(), netip.MustParsePrefix("10.7.0.1/24")); err != nil {
				t.Fatal(err)
			}
			if id, ok := st.NICByName("dev"); !ok || id != d.NIC() || st.NICName(d.NIC()) != "dev" || d.Name() != "dev" || d.Stack() != st {
				t.Fatalf("NICByName(dev) = %d, %v; want %d", id, ok, d.NIC())
			}
			if err := d.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, ok := st.NICByName("dev"); ok {
				t.Error("NICByName finds a closed device")
			}
			if err := d.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(ipv4UDP(9, []byte("x")))})
			d.Deliver(pkt)
			pkt.DecRef()
			if s := d.Counters().Stats(); s.Dropped(stack.DropDeviceDown) != 1 || s.RxPackets != 0 {
				t.Errorf("Deliver after Close: counters %v, want one device_down drop", s)
			}
			// The name is free again and the connected route is gone.
			c, err := st.DialUDP(netip.MustParseAddrPort("10.7.0.2:9"))
			if err == nil {
				_, err = c.Write([]byte("x"))
				c.Close()
			}
			if err == nil {
				t.Error("a datagram to the closed device's subnet was accepted")
			}
			d2, err := stack.NewDevice(st, stack.DeviceConfig{Name: "dev", Layer: layer, EncapLen: 16}, &captureTx{})
			if err != nil {
				t.Fatalf("NewDevice with the closed device's name: %v", err)
			}
			d2.Close()
		})
	}
}

// TestDeviceSetMTU: gVisor's SetNICMTU sets the inner MTU of both layers
// (its Ethernet wrapper passes SetMTU through and subtracts its header only
// when reading), out-of-range values change nothing, and a set MTU is what
// path MTU expiry restores.
func TestDeviceSetMTU(t *testing.T) {
	for _, layer := range []stack.Layer{stack.L3, stack.L2} {
		t.Run(layer.String(), func(t *testing.T) {
			st := newStack(t)
			d, err := stack.NewDevice(st, stack.DeviceConfig{Name: "dev", Layer: layer, EncapLen: 16}, &captureTx{})
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ set, want uint32 }{{1300, 1300}, {67, 1300}, {70000, 1300}, {9000, 9000}} {
				if err := st.GVisor().SetNICMTU(d.NIC(), tc.set); err != nil {
					t.Fatal(err)
				}
				if got := d.InnerMTU(); got != tc.want {
					t.Errorf("after SetNICMTU(%d): InnerMTU %d, want %d", tc.set, got, tc.want)
				}
				if got := st.GVisor().NICInfo()[d.NIC()].MTU; got != tc.want {
					t.Errorf("after SetNICMTU(%d): NIC MTU %d, want %d", tc.set, got, tc.want)
				}
			}
		})
	}
}

// TestDevicePathMTUExpiry: a lowered MTU returns to the derived one when the
// learned path MTU expires, and Close stops the timer.
func TestDevicePathMTUExpiry(t *testing.T) {
	defer stack.SetPathMTUExpiry(50 * time.Millisecond)()
	st := newStack(t)
	d, err := stack.NewDevice(st, stack.DeviceConfig{Name: "dev", Layer: stack.L3, EncapLen: 16}, &captureTx{})
	if err != nil {
		t.Fatal(err)
	}
	base := d.InnerMTU()
	d.UpdatePathMTU(1400)
	if got := d.InnerMTU(); got != 1400-20-16 {
		t.Fatalf("after UpdatePathMTU(1400): %d, want %d", got, 1400-20-16)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.InnerMTU() != base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := d.InnerMTU(); got != base {
		t.Fatalf("MTU %d after the path MTU expired, want the derived %d", got, base)
	}
	d.UpdatePathMTU(1350)
	d.Close() // stops the timer: goleak in TestMain and the check below
	time.Sleep(100 * time.Millisecond)
	if got := d.InnerMTU(); got != 1350-20-16 {
		t.Errorf("MTU %d after Close, want it left at %d (no timer ran)", got, 1350-20-16)
	}
}
