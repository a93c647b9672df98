package fou_test

// Malformed input on FOU, GUE and GRE-in-UDP ports: every datagram is
// either delivered or dropped and counted under its reason, on the socket,
// on the stack's protocol handler or on the device; nothing panics.

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/fou"
)

// innerV4 is an IPv4 header (protocol 253, experimental) from 192.168.42.2
// to 192.168.42.77, an address nobody has: delivered, it makes no reply.
func innerV4() []byte {
	b := make([]byte, header.IPv4MinimumSize+8)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: 253,
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 77})})
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}

// innerV6 is an IPv6 header (next header 253) from fd00:42::2 to
// fd00:42::77 with 8 bytes of payload.
func innerV6() []byte {
	b := make([]byte, header.IPv6MinimumSize+8)
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: 8, TransportProtocol: 253, HopLimit: 64,
		SrcAddr: tcpip.AddrFrom16(netip.MustParseAddr("fd00:42::2").As16()), DstAddr: tcpip.AddrFrom16(netip.MustParseAddr("fd00:42::77").As16())})
	return b
}

// gue returns a variant 0 GUE header with every field as given.
func gue(ver, c, hlen, proto byte, flags uint16) []byte {
	return []byte{ver<<6 | c<<5 | hlen, proto, byte(flags >> 8), byte(flags)}
}

// gre returns a GRE header with the given flags word, protocol and
// optional words (checksum/reserved1, key, sequence, as the flags say).
func gre(flags, proto uint16, words ...uint32) []byte {
	b := binary.BigEndian.AppendUint16(nil, flags)
	b = binary.BigEndian.AppendUint16(b, proto)
	for _, w := range words {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	return b
}

// withGRECsum fills in the checksum of a GRE packet whose C bit is set.
func withGRECsum(p []byte) []byte {
	binary.BigEndian.PutUint16(p[4:], 0)
	binary.BigEndian.PutUint16(p[4:], ^checksum.Checksum(p, 0))
	return p
}

// where says which counters a datagram should move.
type where struct {
	sock, handler, dev tunneltest.Counts
}

func sockDrop(r stack.DropReason) where {
	return where{sock: tunneltest.Counts{Rx: 1, Drops: map[stack.DropReason]uint64{r: 1}}}
}
func handlerDrop(r stack.DropReason) where {
	return where{sock: tunneltest.Counts{Rx: 1}, handler: tunneltest.Counts{Drops: map[stack.DropReason]uint64{r: 1}}}
}
func devDrop(r stack.DropReason) where {
	return where{sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Drops: map[stack.DropReason]uint64{r: 1}}}
}

var delivered = where{sock: tunneltest.Counts{Rx: 1}, dev: tunneltest.Counts{Rx: 1}}

type malformedCase struct {
	name     string
	payload  []byte
	stranger bool      // sent from an address no device has as remote
	handler  fou.Proto // the handler whose counters are checked
	want     where
}

// TestMalformedDatagrams sends crafted datagrams as real UDP to each kind
// of port of a host, over both underlay families, and checks which counter
// each one moves and that nothing else is delivered.
func TestMalformedDatagrams(t *testing.T) {
	v4, v6 := innerV4(), innerV6()
	const gk = 0x2a // the GRE device's key
	for _, sc := range []struct {
		name  string
		sock  fou.SocketConfig
		dev   fou.Config
		cases []malformedCase
	}{
		{"gue", fou.SocketConfig{Type: fou.TypeGUE}, fou.Config{}, []malformedCase{
			{name: "empty", payload: nil, want: sockDrop(stack.DropTruncated)},
			{name: "3 bytes of variant 0", payload: gue(0, 0, 0, 4, 0)[:3], want: sockDrop(stack.DropTruncated)},
			{name: "version 2", payload: slices.Concat(gue(2, 0, 0, 4, 0), v4), want: sockDrop(stack.DropBadHeader)},
			{name: "version 3", payload: slices.Concat(gue(3, 0, 0, 4, 0), v4), want: sockDrop(stack.DropBadHeader)},
			{name: "variant 1 with IP version 5", payload: slices.Concat([]byte{0x50}, v4[1:]), want: sockDrop(stack.DropBadHeader)},
			{name: "variant 1 with IP version 7", payload: slices.Concat([]byte{0x70}, v6[1:]), want: sockDrop(stack.DropBadHeader)},
			{name: "control message", payload: slices.Concat(gue(0, 1, 0, 1, 0), v4), want: sockDrop(stack.DropPolicy)},
			{name: "control message with extensions", payload: slices.Concat(gue(0, 1, 1, 1, 0), make([]byte, 4)), want: sockDrop(stack.DropPolicy)},
			{name: "unknown flag", payload: slices.Concat(gue(0, 0, 0, 4, 0x8000), v4), want: sockDrop(stack.DropBadHeader)},
			{name: "private flag", payload: slices.Concat(gue(0, 0, 1, 4, 0x0001), make([]byte, 4), v4), want: sockDrop(stack.DropBadHeader)},
			{name: "Hlen overruns the datagram", payload: slices.Concat(gue(0, 0, 31, 4, 0), v4), want: sockDrop(stack.DropBadHeader)},
			{name: "Hlen one word past the end", payload: slices.Concat(gue(0, 0, 1, 4, 0)), want: sockDrop(stack.DropBadHeader)},
			{name: "proto 0", payload: slices.Concat(gue(0, 0, 0, 0, 0), v4), want: sockDrop(stack.DropNoHandler)},
			{name: "proto UDP has no handler", payload: slices.Concat(gue(0, 0, 0, 17, 0), v4), want: sockDrop(stack.DropNoHandler)},
			{name: "IPIP without payload", payload: gue(0, 0, 0, 4, 0), handler: fou.ProtoIPIP, want: handlerDrop(stack.DropTruncated)},
			{name: "IPIP carrying IPv6", payload: slices.Concat(gue(0, 0, 0, 4, 0), v6), handler: fou.ProtoIPIP, want: devDrop(stack.DropBadHeader)},
			{name: "IPv6 carrying IPv4", payload: slices.Concat(gue(0, 0, 0, 41, 0), v4), handler: fou.ProtoIPv6, want: devDrop(stack.DropBadHeader)},
			{name: "IPIP from an unknown remote", payload: slices.Concat(gue(0, 0, 0, 4, 0), v4), stranger: true, handler: fou.ProtoIPIP, want: handlerDrop(stack.DropUnknownTunnel)},
			{name: "GRE without a GRE device", payload: slices.Concat(gue(0, 0, 0, 47, 0), gre(0, 0x0800), v4), handler: fou.ProtoGRE, want: handlerDrop(stack.DropUnknownTunnel)},
			{name: "valid IPv4", payload: slices.Concat(gue(0, 0, 0, 4, 0), v4), want: delivered},
			{name: "valid IPv6", payload: slices.Concat(gue(0, 0, 0, 41, 0), v6), want: delivered},
			{name: "extension fields skipped", payload: slices.Concat(gue(0, 0, 2, 4, 0), []byte{1, 2, 3, 4, 5, 6, 7, 8}, v4), want: delivered},
			{name: "variant 1 IPv4", payload: v4, want: delivered},
			{name: "variant 1 IPv6", payload: v6, want: delivered},
		}},
		{"fou-ipip", fou.SocketConfig{Proto: fou.ProtoIPIP}, fou.Config{}, []malformedCase{
			{name: "empty", payload: nil, handler: fou.ProtoIPIP, want: handlerDrop(stack.DropTruncated)},
			{name: "IPv6 packet", payload: v6, handler: fou.ProtoIPIP, want: devDrop(stack.DropBadHeader)},
			{name: "GUE header", payload: slices.Concat(gue(0, 0, 0, 4, 0), v4), handler: fou.ProtoIPIP, want: devDrop(stack.DropBadHeader)},
			{name: "unknown remote", payload: v4, stranger: true, handler: fou.ProtoIPIP, want: handlerDrop(stack.DropUnknownTunnel)},
			{name: "valid IPv4", payload: v4, want: delivered},
		}},
		{"fou-ipv6", fou.SocketConfig{Proto: fou.ProtoIPv6, Local: netip.AddrPortFrom(netip.Addr{}, 5556)}, fou.Config{}, []malformedCase{
			{name: "empty", payload: nil, handler: fou.ProtoIPv6, want: handlerDrop(stack.DropTruncated)},
			{name: "IPv4 packet", payload: v4, handler: fou.ProtoIPv6, want: devDrop(stack.DropBadHeader)},
			{name: "unknown remote", payload: v6, stranger: true, handler: fou.ProtoIPv6, want: handlerDrop(stack.DropUnknownTunnel)},
			{name: "valid IPv6", payload: v6, want: delivered},
		}},
		{"gre-in-udp", fou.SocketConfig{Proto: fou.ProtoGRE}, fou.Config{HasKey: true, Key: gk}, []malformedCase{
			{name: "empty", payload: nil, handler: fou.ProtoGRE, want: handlerDrop(stack.DropTruncated)},
			{name: "3 bytes", payload: gre(0x2000, 0x0800)[:3], handler: fou.ProtoGRE, want: handlerDrop(stack.DropTruncated)},
			{name: "K bit without key", payload: gre(0x2000, 0x0800), handler: fou.ProtoGRE, want: handlerDrop(stack.DropTruncated)},
			{name: "C and K bits, key cut short", payload: gre(0xa000, 0x0800, 0, gk)[:10], handler: fou.ProtoGRE, want: handlerDrop(stack.DropTruncated)},
			{name: "version 1 (PPTP)", payload: slices.Concat(gre(0x2001, 0x0800, gk), v4), handler: fou.ProtoGRE, want: handlerDrop(stack.DropBadHeader)},
			{name: "routing bit", payload: slices.Concat(gre(0x6000, 0x0800, gk), v4), handler: fou.ProtoGRE, want: handlerDrop(stack.DropBadHeader)},
			{name: "strict source route bit", payload: slices.Concat(gre(0x2800, 0x0800, gk), v4), handler: fou.ProtoGRE, want: handlerDrop(stack.DropBadHeader)},
			{name: "recursion control", payload: slices.Concat(gre(0x2400, 0x0800, gk), v4), handler: fou.ProtoGRE, want: handlerDrop(stack.DropBadHeader)},
			{name: "no key", payload: slices.Concat(gre(0, 0x0800), v4), handler: fou.ProtoGRE, want: handlerDrop(stack.DropUnknownTunnel)},
			{name: "wrong key", payload: slices.Concat(gre(0x2000, 0x0800, gk+1), v4), handler: fou.ProtoGRE, want: handlerDrop(stack.DropUnknownTunnel)},
			{name: "unknown remote", payload: slices.Concat(gre(0x2000, 0x0800, gk), v4), stranger: true, handler: fou.ProtoGRE, want: handlerDrop(stack.DropUnknownTunnel)},
			{name: "bad checksum", payload: slices.Concat(gre(0xa000, 0x0800, 0x12340000, gk), v4), handler: fou.ProtoGRE, want: devDrop(stack.DropBadChecksum)},
			{name: "transparent Ethernet bridging", payload: slices.Concat(gre(0x2000, 0x6558, gk), make([]byte, 14)), handler: fou.ProtoGRE, want: devDrop(stack.DropNotForUs)},
			{name: "IPv4 type carrying IPv6", payload: slices.Concat(gre(0x2000, 0x0800, gk), v6), handler: fou.ProtoGRE, want: devDrop(stack.DropBadHeader)},
			{name: "IPv6 type without payload", payload: gre(0x2000, 0x86dd, gk), handler: fou.ProtoGRE, want: devDrop(stack.DropTruncated)},
			{name: "valid IPv4", payload: slices.Concat(gre(0x2000, 0x0800, gk), v4), want: delivered},
			{name: "valid IPv6 with checksum and sequence number", payload: withGRECsum(slices.Concat(gre(0xb000, 0x86dd, 0, gk, 7), v6)), want: delivered},
			{name: "reserved0 bits 6-12 ignored", payload: slices.Concat(gre(0x2000|0x00f8, 0x0800, gk), v4), want: delivered},
		}},
	} {
		for _, outer6 := range []bool{false, true} {
			t.Run(sc.name+map[bool]string{false: "/outer4", true: "/outer6"}[outer6], func(t *testing.T) {
				hs := pair(t, topo{outer6: outer6, sock: sc.sock, dev: sc.dev, opts: memlink.Options{Sync: true}})
				from, to := hs[0], hs[1]
				stranger := netip.MustParsePrefix("10.99.0.3/24")
				if outer6 {
					stranger = netip.MustParsePrefix("fd00:99::3/64")
				}
				if err := from.st.AddAddress(from.under, stranger); err != nil {
					t.Fatal(err)
				}
				port := to.sock.Tunnel().LocalAddr().Port()
				for _, tc := range sc.cases {
					t.Run(tc.name, func(t *testing.T) {
						h := to.sock.Handler(fou.ProtoIPIP)
						if tc.handler != fou.ProtoAuto {
							h = to.sock.Handler(tc.handler)
						}
						sockBefore, hBefore, devBefore := to.sock.Tunnel().Counters().Stats(), h.Counters().Stats(), to.dev.Counters().Stats()
						src := from.outer
						if tc.stranger {
							src = stranger.Addr()
						}
						tunneltest.SendUDPFrom(t, from.st, src, netip.AddrPortFrom(to.outer, port), tc.payload)
						tunneltest.Eventually(t, "the datagram to reach the socket", func() bool {
							s := to.sock.Tunnel().Counters().Stats()
							return s.RxPackets+s.TotalDrops() > sockBefore.RxPackets+sockBefore.TotalDrops()
						})
						tunneltest.CheckCounts(t, "socket", tunneltest.Since(sockBefore, to.sock.Tunnel().Counters()), tc.want.sock)
						tunneltest.CheckCounts(t, "handler "+h.Proto().String(), tunneltest.Since(hBefore, h.Counters()), tc.want.handler)
						tunneltest.CheckCounts(t, "device", tunneltest.Since(devBefore, to.dev.Counters()), tc.want.dev)
					})
				}
			})
		}
	}
}
