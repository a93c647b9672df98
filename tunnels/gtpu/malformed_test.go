package gtpu_test

// Malformed input on the GTP-U port: every datagram is delivered, passed to
// the control plane, or dropped and counted under its reason; nothing
// panics.

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/gtpu"
)

// TestMalformedDatagrams sends crafted datagrams from a plain UDP socket of
// the SGSN-side stack to the GGSN-side socket (session TEID 100, UE
// 192.168.42.2 and fd42::2), over both underlay families, and checks which
// counters move.
func TestMalformedDatagrams(t *testing.T) {
	sock := func(r stack.DropReason) tunneltest.Counts {
		return tunneltest.Counts{Rx: 1, Drops: map[stack.DropReason]uint64{r: 1}}
	}
	devDrop := func(r stack.DropReason) tunneltest.Counts {
		return tunneltest.Counts{Drops: map[stack.DropReason]uint64{r: 1}}
	}
	ok := tunneltest.Counts{Rx: 1}
	mod := func(b []byte, f func(b []byte)) []byte { b = bytes.Clone(b); f(b); return b }
	up4 := ipv4From(ue4, gw4)
	up6 := ipv6From(ue6, gw6)
	good := gpduMsg(teidUp, up4)
	long := func(next uint8, ext []byte, payload []byte) []byte {
		b := make([]byte, gtpu.LongHeaderLen)
		gtpu.Header(b).Encode(&gtpu.Fields{Type: gtpu.GPDU, Length: uint16(4 + len(ext) + len(payload)), TEID: teidUp, NextExt: next})
		return slices.Concat(b, ext, payload)
	}
	for _, outer4 := range []bool{true, false} {
		t.Run(map[bool]string{true: "outer4", false: "outer6"}[outer4], func(t *testing.T) {
			hs := pair(t, outer4, memlink.Options{Sync: true}, nil)
			from, to := hs[1], hs[0]
			for _, tc := range []struct {
				name    string
				payload []byte
				sock    tunneltest.Counts // socket counter delta
				dev     tunneltest.Counts // device counter delta
				passed  uint64            // messages handed to the control plane
			}{
				// Header errors, counted on the socket.
				{name: "empty", payload: nil, sock: sock(stack.DropTruncated)},
				{name: "7 octets", payload: good[:7], sock: sock(stack.DropTruncated)},
				{name: "version 0 (GTPv0)", payload: mod(good, func(b []byte) { b[0] = 0x10 }), sock: sock(stack.DropBadHeader)},
				{name: "version 2 (GTPv2-C)", payload: mod(good, func(b []byte) { b[0] = 0x48 }), sock: sock(stack.DropBadHeader)},
				{name: "GTP prime", payload: mod(good, func(b []byte) { b[0] = 0x20 }), sock: sock(stack.DropBadHeader)},
				// The Length field says more than arrived: bytes were lost.
				{name: "length beyond datagram", payload: good[:len(good)-1], sock: sock(stack.DropTruncated)},
				{name: "length 0xffff", payload: mod(good, func(b []byte) { b[2], b[3] = 0xff, 0xff }), sock: sock(stack.DropTruncated)},
				// The header contradicts its own Length field.
				{name: "S flag with length 2", payload: []byte{0x32, 0xff, 0, 2, 0, 0, 0, 100, 0, 0}, sock: sock(stack.DropBadHeader)},
				{name: "E flag, extension length 0", payload: long(gtpu.ExtPDUSessionContainer, []byte{0, 0, 0, 0}, up4), sock: sock(stack.DropBadHeader)},
				{name: "E flag, extension past length", payload: mod(long(gtpu.ExtPDUSessionContainer, []byte{1, 0, 9, 0}, nil), func(b []byte) { b[12] = 2 }), sock: sock(stack.DropBadHeader)},
				{name: "E flag, no room for the extension", payload: long(gtpu.ExtPDUSessionContainer, nil, nil), sock: sock(stack.DropBadHeader)},
				{name: "Echo Request without S", payload: []byte{0x30, 1, 0, 0, 0, 0, 0, 0}, sock: sock(stack.DropBadHeader)},
				{name: "Echo Request with a TEID", payload: []byte{0x32, 1, 0, 4, 0, 0, 0, 1, 0, 9, 0, 0}, sock: sock(stack.DropBadHeader)},
				// Unknown TEID: the control plane's business (kernel: return 1).
				{name: "unknown TEID", payload: gpduMsg(4242, up4), sock: ok, passed: 1},
				// Errors in the T-PDU, counted on the device.
				{name: "no T-PDU", payload: gpduMsg(teidUp, nil), sock: ok, dev: devDrop(stack.DropTruncated)},
				{name: "T-PDU shorter than IPv4", payload: gpduMsg(teidUp, up4[:12]), sock: ok, dev: devDrop(stack.DropTruncated)},
				{name: "T-PDU shorter than IPv6", payload: gpduMsg(teidUp, up6[:30]), sock: ok, dev: devDrop(stack.DropTruncated)},
				{name: "T-PDU not IP", payload: gpduMsg(teidUp, mod(up4, func(b []byte) { b[0] = 0x55 })), sock: ok, dev: devDrop(stack.DropNotForUs)},
				{name: "IPv4 source not the UE", payload: gpduMsg(teidUp, ipv4From(netip.MustParseAddr("192.168.42.9"), gw4)), sock: ok, dev: devDrop(stack.DropPolicy)},
				{name: "IPv6 source not the UE", payload: gpduMsg(teidUp, ipv6From(netip.MustParseAddr("fd42::9"), gw6)), sock: ok, dev: devDrop(stack.DropPolicy)},
				{name: "unknown comprehension-required extension", payload: long(0xfe, []byte{1, 0, 0, 0}, up4), sock: ok, dev: devDrop(stack.DropPolicy)},
				// Accepted.
				{name: "IPv4 from the UE", payload: good, sock: ok, dev: ok},
				{name: "IPv6 from the UE", payload: gpduMsg(teidUp, up6), sock: ok, dev: ok},
				{name: "PDU Session Container", payload: long(gtpu.ExtPDUSessionContainer, []byte{1, 0x10, 9, 0}, up4), sock: ok, dev: ok},
				{name: "unknown optional extension", payload: long(0x01, []byte{1, 0xaa, 0xbb, 0}, up4), sock: ok, dev: ok},
				{name: "S and PN without extension", payload: slices.Concat([]byte{0x33, 0xff, 0, byte(4 + len(up4)), 0, 0, 0, byte(teidUp), 0, 9, 3, 0}, up4), sock: ok, dev: ok},
				{name: "octets after Length", payload: slices.Concat(good, []byte{0xee, 0xee, 0xee}), sock: ok, dev: ok},
				{name: "9000-octet T-PDU", payload: gpduMsg(teidUp, slices.Concat(mod(up4, func(b []byte) { b[2], b[3] = 0x23, 0x28 }), make([]byte, 8980))), sock: ok, dev: ok},
			} {
				t.Run(tc.name, func(t *testing.T) {
					sockBefore, devBefore, gBefore := to.sock.Tunnel().Counters().Stats(), to.dev.Counters().Stats(), to.sock.Stats()
					tunneltest.SendUDP(t, from.st, netip.AddrPortFrom(to.outer, gtpu.DefaultPort), tc.payload)
					tunneltest.Eventually(t, "the datagram to reach the socket", func() bool {
						s := to.sock.Tunnel().Counters().Stats()
						return s.RxPackets+s.TotalDrops() > sockBefore.RxPackets+sockBefore.TotalDrops()
					})
					// Tx is left out: the inner stack answers what it is
					// delivered (ICMP unreachable), through the tunnel.
					gotSock, gotDev := tunneltest.Since(sockBefore, to.sock.Tunnel().Counters()), tunneltest.Since(devBefore, to.dev.Counters())
					gotSock.Tx, gotDev.Tx = 0, 0
					tunneltest.CheckCounts(t, "socket", gotSock, tc.sock)
					tunneltest.CheckCounts(t, "device", gotDev, tc.dev)
					if got := to.sock.Stats().PassedToUDP - gBefore.PassedToUDP; got != tc.passed {
						t.Errorf("passed to the control plane %d, want %d", got, tc.passed)
					}
				})
			}
		})
	}
}
