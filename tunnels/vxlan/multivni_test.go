package vxlan_test

// One VXLAN socket serves several VNIs, as the kernel's vxlan_sock does:
// each VNI's frames reach only that VNI's device.

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

func TestOneSocketManyVNIs(t *testing.T) {
	hs := pair(t, topo{outer4: true, opts: memlink.Options{Sync: true}}, nil) // VNI 42 on 192.168.42.0/24
	// VNI 43 on the same sockets, with its own subnet.
	var dev43 [2]*vxlan.Device
	for i, h := range hs {
		dev43[i] = h.addDevice(t, vxlan.Config{VNI: 43, Remotes: []netip.Addr{hs[1-i].outer}},
			netip.MustParsePrefix(fmt.Sprintf("192.168.43.%d/24", i+1)))
		if h.sock.Device(42) != h.dev || h.sock.Device(43) != dev43[i] {
			t.Fatalf("socket %v does not map VNIs 42 and 43 to their devices", h.outer)
		}
	}
	a, b := hs[0], hs[1]
	// Both overlays resolve and answer on their own.
	ping(t, a, netip.MustParseAddr("192.168.42.2"))
	ping(t, a, netip.MustParseAddr("192.168.43.2"))
	ping(t, b, netip.MustParseAddr("192.168.43.1"))
	if mac, ok := neighbor(t, a.st, dev43[0].NIC(), netip.MustParseAddr("192.168.43.2")); !ok || string(mac) != string(dev43[1].MAC()) {
		t.Errorf("192.168.43.2 resolves to %v on VNI 43, want B's VNI 43 device %v", mac, dev43[1].MAC())
	}

	settleCounters(t, a.dev.Counters(), b.dev.Counters(), dev43[0].Counters(), dev43[1].Counters())

	const port = 7000
	anyAddr := netip.AddrPortFrom(netip.IPv4Unspecified(), port)
	pc := listenUDP(t, b.st, anyAddr)
	for _, tc := range []struct {
		vni        vxlan.VNI
		dst        netip.Addr
		via, other *vxlan.Device // B's device that must see the frame, and the one that must not
	}{
		{42, netip.MustParseAddr("192.168.42.2"), b.dev, dev43[1]},
		{43, netip.MustParseAddr("192.168.43.2"), dev43[1], b.dev},
	} {
		t.Run(fmt.Sprintf("VNI %d", tc.vni), func(t *testing.T) {
			via, other := tc.via.Counters().Stats(), tc.other.Counters().Stats()
			sock := b.sock.Tunnel().Counters().Stats()
			const n = 4
			for i := range n {
				m := []byte(fmt.Sprintf("VNI %d message %d", tc.vni, i))
				tunneltest.SendUDP(t, a.st, netip.AddrPortFrom(tc.dst, port), m)
				recvUDP(t, pc, m)
			}
			tunneltest.CheckCounts(t, fmt.Sprintf("B VNI %d device", tc.vni), tunneltest.Since(via, tc.via.Counters()), tunneltest.Counts{Rx: n})
			tunneltest.CheckCounts(t, "B other device", tunneltest.Since(other, tc.other.Counters()), tunneltest.Counts{})
			tunneltest.CheckCounts(t, "B socket", tunneltest.Since(sock, b.sock.Tunnel().Counters()), tunneltest.Counts{Rx: n})
		})
	}

	// Closing one VNI's device leaves the other working on the same socket.
	if err := b.dev.Close(); err != nil {
		t.Fatal(err)
	}
	sock := b.sock.Tunnel().Counters().Stats()
	tunneltest.SendUDP(t, a.st, netip.AddrPortFrom(netip.MustParseAddr("192.168.42.2"), port), []byte("to a closed VNI"))
	checkDrops(t, "B socket", tunneltest.Since(sock, b.sock.Tunnel().Counters()), map[stack.DropReason]uint64{stack.DropUnknownTunnel: 1})
	ping(t, a, netip.MustParseAddr("192.168.43.2"))
}
