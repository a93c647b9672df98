package vxlan_test

// The forwarding database seen from the wire: head-end replication to
// several remotes, learning and ageing, MAC moves, static entries.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// macOf returns a device's MAC as an FDB key.
func macOf(d *vxlan.Device) vxlan.MAC { return vxlan.MAC(d.MAC()) }

// ignoreAge compares FDB entries without their age, which depends on when
// the test ran.
var ignoreAge = cmpopts.IgnoreFields(vxlan.Entry{}, "Age")

// equateAddrs compares netip.Addr values with ==.
var equateAddrs = cmpopts.EquateComparable(netip.Addr{})

// checkEntries compares d's FDB with want, in any order.
func checkEntries(t testing.TB, what string, d *vxlan.Device, want []vxlan.Entry) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b vxlan.Entry) int { return bytes.Compare(a.MAC[:], b.MAC[:]) })
	if diff := cmp.Diff(want, d.FDB().Entries(), ignoreAge, equateAddrs, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s FDB (-want +got):\n%s", what, diff)
	}
}

// defaultEntry is the all-zeros entry a device makes of its Remotes.
func defaultEntry(remotes ...netip.Addr) vxlan.Entry {
	e := vxlan.Entry{Static: true}
	for _, r := range remotes {
		e.Remotes = append(e.Remotes, vxlan.Remote{Addr: r})
	}
	return e
}

// sendBroadcast sends payload to the IPv4 broadcast address dst from a UDP
// socket of st with SO_BROADCAST set.
func sendBroadcast(t testing.TB, st *stack.Stack, dst netip.AddrPort, payload []byte) {
	t.Helper()
	var wq waiter.Queue
	ep, terr := st.GVisor().NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatalf("UDP endpoint: %v", terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	c := gonet.NewUDPConn(&wq, ep)
	defer c.Close()
	if _, err := c.WriteTo(payload, net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatalf("broadcast to %v: %v", dst, err)
	}
}

// vxlanFrame returns a VXLAN header for vni followed by an Ethernet frame
// from src to dst with the given EtherType and payload.
func vxlanFrame(vni vxlan.VNI, dst, src vxlan.MAC, etherType uint16, payload []byte) []byte {
	b := make([]byte, vxlan.HeaderLen+header.EthernetMinimumSize+len(payload))
	vxlan.Header(b).Encode(&vxlan.Fields{VNI: vni})
	header.Ethernet(b[vxlan.HeaderLen:]).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(src[:]),
		DstAddr: tcpip.LinkAddress(dst[:]),
		Type:    tcpip.NetworkProtocolNumber(etherType),
	})
	copy(b[vxlan.HeaderLen+header.EthernetMinimumSize:], payload)
	return b
}

// etherExperimental is the IEEE local experimental EtherType: frames of it
// cross the device and are then ignored by the inner stack.
const etherExperimental = 0x88b5

// TestFloodHeadEndReplication: host A's device has two remotes, B and C, on
// a hub. A broadcast reaches both (one copy each); once A has learned B's
// MAC, unicast to B goes to B alone.
func TestFloodHeadEndReplication(t *testing.T) {
	hs := trio(t, memlink.Options{Sync: true}, func(i int, c *vxlan.Config) { c.Learning = i == 0 })
	a, b, c := hs[0], hs[1], hs[2]
	const port = 7000
	anyAddr := netip.AddrPortFrom(netip.IPv4Unspecified(), port)
	pcB, pcC := listenUDP(t, b.st, anyAddr), listenUDP(t, c.st, anyAddr)
	bInner := b.inner[0].Addr()

	// An inner UDP broadcast: one frame on A's device, two outer datagrams
	// from A's socket, one frame into each of B's and C's devices.
	devA, sockA := a.dev.Counters().Stats(), a.sock.Tunnel().Counters().Stats()
	devB, devC := b.dev.Counters().Stats(), c.dev.Counters().Stats()
	msg := []byte("to everyone on VNI 42")
	sendBroadcast(t, a.st, netip.MustParseAddrPort("192.168.42.255:7000"), msg)
	recvUDP(t, pcB, msg)
	recvUDP(t, pcC, msg)
	tunneltest.CheckCounts(t, "A device", tunneltest.Since(devA, a.dev.Counters()), tunneltest.Counts{Tx: 1})
	tunneltest.CheckCounts(t, "A socket", tunneltest.Since(sockA, a.sock.Tunnel().Counters()), tunneltest.Counts{Tx: 2})
	tunneltest.CheckCounts(t, "B device", tunneltest.Since(devB, b.dev.Counters()), tunneltest.Counts{Rx: 1})
	tunneltest.CheckCounts(t, "C device", tunneltest.Since(devC, c.dev.Counters()), tunneltest.Counts{Rx: 1})
	checkEntries(t, "A before learning", a.dev, []vxlan.Entry{defaultEntry(b.outer, c.outer)})

	// A ping: A's ARP request is flooded (C sees it too), B's reply teaches
	// A where B's MAC lives, and the echo itself goes to B alone. On a
	// synchronous wire the ping can return before the ARP request's copy
	// for C has left A: wait for the counters to settle.
	sockA, devB, devC = a.sock.Tunnel().Counters().Stats(), b.dev.Counters().Stats(), c.dev.Counters().Stats()
	ping(t, a, bInner)
	settleCounters(t, a.sock.Tunnel().Counters(), b.dev.Counters(), c.dev.Counters())
	// A sends ARP to B and C and the echo, and receives the ARP reply and
	// the echo reply; B gets and answers both; C gets the ARP request only.
	tunneltest.CheckCounts(t, "A socket during ping", tunneltest.Since(sockA, a.sock.Tunnel().Counters()), tunneltest.Counts{Rx: 2, Tx: 3})
	tunneltest.CheckCounts(t, "B device during ping", tunneltest.Since(devB, b.dev.Counters()), tunneltest.Counts{Rx: 2, Tx: 2})
	tunneltest.CheckCounts(t, "C device during ping", tunneltest.Since(devC, c.dev.Counters()), tunneltest.Counts{Rx: 1})
	checkEntries(t, "A after ping", a.dev, []vxlan.Entry{
		defaultEntry(b.outer, c.outer),
		{MAC: macOf(b.dev), Remotes: []vxlan.Remote{{Addr: b.outer}}},
	})

	// Unicast to B now costs one outer datagram and C sees none of it.
	devB, devC = b.dev.Counters().Stats(), c.dev.Counters().Stats()
	sockA, sockC := a.sock.Tunnel().Counters().Stats(), c.sock.Tunnel().Counters().Stats()
	const n = 5
	for i := range n {
		m := []byte{'u', 'n', 'i', byte('0' + i)}
		tunneltest.SendUDP(t, a.st, netip.AddrPortFrom(bInner, port), m)
		recvUDP(t, pcB, m)
	}
	tunneltest.CheckCounts(t, "A socket", tunneltest.Since(sockA, a.sock.Tunnel().Counters()), tunneltest.Counts{Tx: n})
	tunneltest.CheckCounts(t, "B device", tunneltest.Since(devB, b.dev.Counters()), tunneltest.Counts{Rx: n})
	tunneltest.CheckCounts(t, "C device", tunneltest.Since(devC, c.dev.Counters()), tunneltest.Counts{})
	tunneltest.CheckCounts(t, "C socket", tunneltest.Since(sockC, c.sock.Tunnel().Counters()), tunneltest.Counts{})
	noUDP(t, pcC, 50*time.Millisecond)
}

// TestLearningAndAgeing: with learning on, traffic teaches the FDB the
// peer's MAC as a learned entry, which ageing removes after AgeingTime and
// traffic teaches again; with learning off nothing is learned.
func TestLearningAndAgeing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		learning bool
		ageing   time.Duration // Config.AgeingTime
		lifetime time.Duration // effective; 0 = never ages
	}{
		{name: "off", learning: false},
		{name: "default ageing", learning: true, ageing: 0, lifetime: vxlan.DefaultAgeingTime},
		{name: "one minute", learning: true, ageing: time.Minute, lifetime: time.Minute},
		{name: "never ages", learning: true, ageing: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := pair(t, topo{outer4: true}, func(_ int, c *vxlan.Config) {
				c.Learning, c.AgeingTime = tc.learning, tc.ageing
			})
			a, b := hs[0], hs[1]
			ping(t, a, b.inner[0].Addr())
			learned := vxlan.Entry{MAC: macOf(b.dev), Remotes: []vxlan.Remote{{Addr: b.outer}}}
			if !tc.learning {
				checkEntries(t, "A", a.dev, []vxlan.Entry{defaultEntry(b.outer)})
				if got := a.dev.FDB().Stats(); got != (vxlan.FDBStats{}) {
					t.Errorf("FDB stats with learning off: %+v, want zero", got)
				}
				return
			}
			checkEntries(t, "A after ping", a.dev, []vxlan.Entry{defaultEntry(b.outer), learned})
			checkEntries(t, "B after ping", b.dev, []vxlan.Entry{
				defaultEntry(a.outer),
				{MAC: macOf(a.dev), Remotes: []vxlan.Remote{{Addr: a.outer}}},
			})

			if tc.lifetime == 0 {
				if n := a.dev.FDB().Tick(time.Now().Add(1000 * time.Hour)); n != 0 {
					t.Errorf("Tick after 1000 h expired %d entries, want 0 (ageing off)", n)
				}
				checkEntries(t, "A after 1000 h", a.dev, []vxlan.Entry{defaultEntry(b.outer), learned})
				return
			}
			// Half the lifetime later the entry is still there, a
			// lifetime later it is gone; the default entry never ages.
			if n := a.dev.FDB().Tick(time.Now().Add(tc.lifetime / 2)); n != 0 {
				t.Errorf("Tick at half the ageing time expired %d entries, want 0", n)
			}
			if n := a.dev.FDB().Tick(time.Now().Add(tc.lifetime + time.Second)); n != 1 {
				t.Errorf("Tick past the ageing time expired %d entries, want 1", n)
			}
			checkEntries(t, "A after ageing", a.dev, []vxlan.Entry{defaultEntry(b.outer)})

			// B's next frame teaches A again.
			ping(t, b, a.inner[0].Addr())
			checkEntries(t, "A after relearning", a.dev, []vxlan.Entry{defaultEntry(b.outer), learned})
			if diff := cmp.Diff(vxlan.FDBStats{Learned: 2, Expired: 1}, a.dev.FDB().Stats()); diff != "" {
				t.Errorf("A FDB stats (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLearnedMACMoves: a learned MAC that shows up behind another VTEP moves
// there (unicast follows it), and moves back; a static entry does not move
// and the frame that contradicts it is dropped.
func TestLearnedMACMoves(t *testing.T) {
	hs := trio(t, memlink.Options{Sync: true}, func(i int, c *vxlan.Config) { c.Learning = i == 0 })
	a, b, c := hs[0], hs[1], hs[2]
	const port = 7000
	pcB := listenUDP(t, b.st, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
	toB := netip.AddrPortFrom(b.inner[0].Addr(), port)
	aTunnel := netip.AddrPortFrom(a.outer, vxlan.DefaultPort)

	ping(t, a, b.inner[0].Addr()) // A learns B's MAC behind B
	settleCounters(t, a.dev.Counters(), b.dev.Counters(), c.dev.Counters())
	atB := vxlan.Entry{MAC: macOf(b.dev), Remotes: []vxlan.Remote{{Addr: b.outer}}}
	atC := vxlan.Entry{MAC: macOf(b.dev), Remotes: []vxlan.Remote{{Addr: c.outer}}}
	checkEntries(t, "A", a.dev, []vxlan.Entry{defaultEntry(b.outer, c.outer), atB})

	// C sends a frame with B's MAC as its source: the entry moves to C.
	devA := a.dev.Counters().Stats()
	spoof := vxlanFrame(42, macOf(a.dev), macOf(b.dev), etherExperimental, []byte("I am B now"))
	if err := c.sock.Tunnel().SendDatagram(spoof, aTunnel); err != nil {
		t.Fatal(err)
	}
	tunneltest.Eventually(t, "A to receive C's frame", func() bool { return a.dev.Counters().Stats().RxPackets > devA.RxPackets })
	tunneltest.CheckCounts(t, "A device", tunneltest.Since(devA, a.dev.Counters()), tunneltest.Counts{Rx: 1})
	checkEntries(t, "A after the move", a.dev, []vxlan.Entry{defaultEntry(b.outer, c.outer), atC})
	if got := a.dev.FDB().Stats().Moved; got != 1 {
		t.Errorf("FDB Moved = %d, want 1", got)
	}

	// Unicast to B's MAC now goes to C, whose device is not B's MAC.
	devB, devC := b.dev.Counters().Stats(), c.dev.Counters().Stats()
	tunneltest.SendUDP(t, a.st, toB, []byte("lost to C"))
	tunneltest.CheckCounts(t, "C device", tunneltest.Since(devC, c.dev.Counters()), tunneltest.Counts{Drops: map[stack.DropReason]uint64{stack.DropNotForUs: 1}})
	tunneltest.CheckCounts(t, "B device", tunneltest.Since(devB, b.dev.Counters()), tunneltest.Counts{})
	noUDP(t, pcB, 50*time.Millisecond)

	// B speaks again: the entry moves back and unicast reaches B.
	tunneltest.SendUDP(t, b.st, netip.AddrPortFrom(a.inner[0].Addr(), port), []byte("I am B"))
	tunneltest.Eventually(t, "A to learn B back", func() bool { return a.dev.FDB().Stats().Moved == 2 })
	checkEntries(t, "A after moving back", a.dev, []vxlan.Entry{defaultEntry(b.outer, c.outer), atB})
	tunneltest.SendUDP(t, a.st, toB, []byte("found B"))
	recvUDP(t, pcB, []byte("found B"))

	// A static entry never moves: a frame from that MAC via another VTEP
	// is dropped by policy and not delivered.
	pinned := vxlan.MAC{0x02, 0xaa, 0, 0, 0, 1}
	if err := a.dev.FDB().Add(pinned, vxlan.Remote{Addr: c.outer}); err != nil {
		t.Fatal(err)
	}
	settleCounters(t, a.dev.Counters())
	devA = a.dev.Counters().Stats()
	if err := b.sock.Tunnel().SendDatagram(vxlanFrame(42, macOf(a.dev), pinned, etherExperimental, nil), aTunnel); err != nil {
		t.Fatal(err)
	}
	tunneltest.Eventually(t, "A to drop B's frame", func() bool { return a.dev.Counters().Stats().TotalDrops() > devA.TotalDrops() })
	tunneltest.CheckCounts(t, "A device", tunneltest.Since(devA, a.dev.Counters()), tunneltest.Counts{Drops: map[stack.DropReason]uint64{stack.DropPolicy: 1}})
	checkEntries(t, "A after the static conflict", a.dev, []vxlan.Entry{
		defaultEntry(b.outer, c.outer),
		atB,
		{MAC: pinned, Remotes: []vxlan.Remote{{Addr: c.outer}}, Static: true},
	})
}

// TestStaticFDB: with no remotes and learning off nothing leaves the device
// (DropNoRemote) until static entries say where to send: a unicast entry
// for the peer's MAC, and the default entry for broadcast and multicast
// (ARP, NDP).
func TestStaticFDB(t *testing.T) {
	hs := pair(t, topo{outer4: true}, func(_ int, c *vxlan.Config) { c.Remotes = nil })
	a, b := hs[0], hs[1]
	const port = 7000
	bIn := b.inner[0].Addr()
	pcB := listenUDP(t, b.st, netip.AddrPortFrom(bIn, port))
	checkEntries(t, "A", a.dev, nil)

	// Unicast with the neighbour known (no ARP): dropped for want of a
	// remote, exactly once per datagram.
	addStaticNeighbor(t, a.st, a.dev.NIC(), bIn, b.dev.MAC())
	devA := a.dev.Counters().Stats()
	tunneltest.SendUDP(t, a.st, netip.AddrPortFrom(bIn, port), []byte("nowhere"))
	tunneltest.CheckCounts(t, "A device", tunneltest.Since(devA, a.dev.Counters()), tunneltest.Counts{Drops: map[stack.DropReason]uint64{stack.DropNoRemote: 1}})
	noUDP(t, pcB, 50*time.Millisecond)

	// A static entry for B's MAC carries unicast.
	if err := a.dev.FDB().Add(macOf(b.dev), vxlan.Remote{Addr: b.outer}); err != nil {
		t.Fatal(err)
	}
	devA = a.dev.Counters().Stats()
	tunneltest.SendUDP(t, a.st, netip.AddrPortFrom(bIn, port), []byte("static"))
	recvUDP(t, pcB, []byte("static"))
	tunneltest.CheckCounts(t, "A device", tunneltest.Since(devA, a.dev.Counters()), tunneltest.Counts{Tx: 1})

	// Without the static neighbour, ARP's broadcast has no remote: the
	// ping fails and its one ARP request is counted.
	if terr := a.st.GVisor().RemoveNeighbor(a.dev.NIC(), header.IPv4ProtocolNumber, tcpip.AddrFromSlice(bIn.AsSlice())); terr != nil {
		t.Fatal(terr)
	}
	devA = a.dev.Counters().Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := a.st.Ping(ctx, bIn, 1, 56)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping without a default entry: %v, want %v", err, context.DeadlineExceeded)
	}
	tunneltest.CheckCounts(t, "A device", tunneltest.Since(devA, a.dev.Counters()), tunneltest.Counts{Drops: map[stack.DropReason]uint64{stack.DropNoRemote: 1}})

	// Default entries for flooding and unicast entries on both sides:
	// ARP, NDP and pings work both ways.
	for _, h := range []struct{ self, peer *host }{{a, b}, {b, a}} {
		if err := h.self.dev.FDB().Append(vxlan.MAC{}, vxlan.Remote{Addr: h.peer.outer}); err != nil {
			t.Fatal(err)
		}
		if err := h.self.dev.FDB().Add(macOf(h.peer.dev), vxlan.Remote{Addr: h.peer.outer}); err != nil {
			t.Fatal(err)
		}
	}
	devA = a.dev.Counters().Stats()
	for i := range a.inner {
		ping(t, a, b.inner[i].Addr())
		ping(t, b, a.inner[i].Addr())
	}
	checkDrops(t, "A device", tunneltest.Since(devA, a.dev.Counters()), nil)
	checkEntries(t, "A", a.dev, []vxlan.Entry{
		defaultEntry(b.outer),
		{MAC: macOf(b.dev), Remotes: []vxlan.Remote{{Addr: b.outer}}, Static: true},
	})
}

// TestFloodCopiesAreIndependent floods one frame to three remotes over an
// underlay that queues packets (a channel endpoint) and checks each queued
// copy: its own outer destination, a valid UDP checksum, the VNI and the
// untouched inner frame. The copies share the inner frame's bytes, so a
// header written for one remote must not show up in another's.
func TestFloodCopiesAreIndependent(t *testing.T) {
	remotes := []netip.Addr{injectPeer4, netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("10.99.0.4")}
	h := newInjectHost(t, func(c *vxlan.Config) { c.Remotes = remotes })
	const port = 7000
	msg := []byte("one frame, three copies")
	sendBroadcast(t, h.st, netip.MustParseAddrPort("192.168.42.255:7000"), msg)
	var got []netip.Addr
	for {
		pkt := h.ep.Read()
		if pkt == nil {
			break
		}
		b := pkt.ToView().AsSlice()
		pkt.DecRef()
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
			t.Fatalf("not an IPv4/UDP packet: %x", b)
		}
		dst := netip.AddrFrom4(ip.DestinationAddress().As4())
		got = append(got, dst)
		u := header.UDP(ip.Payload())
		if !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(u.Payload(), 0)) {
			t.Errorf("copy to %v: bad UDP checksum", dst)
		}
		if u.DestinationPort() != vxlan.DefaultPort {
			t.Errorf("copy to %v: UDP port %d, want %d", dst, u.DestinationPort(), vxlan.DefaultPort)
		}
		vh, err := vxlan.Parse(u.Payload())
		if err != nil || vh.VNI() != 42 {
			t.Errorf("copy to %v: VXLAN header %x (%v), want VNI 42", dst, u.Payload()[:min(8, len(u.Payload()))], err)
			continue
		}
		eth := header.Ethernet(vh.Payload())
		inner := header.IPv4(eth[header.EthernetMinimumSize:])
		if eth.DestinationAddress() != header.EthernetBroadcastAddress || !inner.IsValid(len(inner)) {
			t.Errorf("copy to %v: inner frame %x", dst, vh.Payload())
			continue
		}
		if p := header.UDP(inner.Payload()).Payload(); string(p) != string(msg) || header.UDP(inner.Payload()).DestinationPort() != port {
			t.Errorf("copy to %v: inner payload %q, want %q", dst, p, msg)
		}
	}
	if diff := cmp.Diff(remotes, got, equateAddrs); diff != "" {
		t.Errorf("outer destinations of the copies (-want +got):\n%s", diff)
	}
}
