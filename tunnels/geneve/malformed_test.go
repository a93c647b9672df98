package geneve_test

// Malformed input on the Geneve port, sent as real UDP datagrams through the
// outer IP layer over both families: every class is dropped and counted
// under its exact reason, on the socket or on the device, and nothing is
// delivered.

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/geneve"
)

// rawHeader returns a Geneve header with every field as given, valid or
// not: the first byte (Ver and Opt Len), the flags byte, the protocol type
// and the VNI, followed by opts verbatim.
func rawHeader(verOptLen, flags byte, proto uint16, vni uint32, opts ...byte) []byte {
	b := make([]byte, 8, 8+len(opts))
	b[0], b[1] = verOptLen, flags
	binary.BigEndian.PutUint16(b[2:], proto)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, opts...)
}

// ethFrame returns an Ethernet header from 02:aa:00:00:00:01 to dst with
// EtherType IPv4, and an IPv4 header.
func ethFrame(dst tcpip.LinkAddress) []byte {
	b := make([]byte, header.EthernetMinimumSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\xaa\x00\x00\x00\x01", DstAddr: dst, Type: header.IPv4ProtocolNumber})
	return append(b, ipv4Packet()...)
}

// ipv4Packet returns an IPv4 header to 192.168.42.2 with no payload.
func ipv4Packet() []byte {
	b := make([]byte, header.IPv4MinimumSize)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize, TTL: 64, Protocol: 253,
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 9}), DstAddr: tcpip.AddrFrom4([4]byte{192, 168, 42, 2})})
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}

// ipv6Packet returns an IPv6 header to fd42::2 with no payload.
func ipv6Packet() []byte {
	b := make([]byte, header.IPv6MinimumSize)
	header.IPv6(b).Encode(&header.IPv6Fields{TransportProtocol: 253, HopLimit: 64,
		SrcAddr: tcpip.AddrFrom16([16]byte{0xfd, 0x42, 15: 9}), DstAddr: tcpip.AddrFrom16([16]byte{0xfd, 0x42, 15: 2})})
	return b
}

// none stands for "no drop" in the table below.
const none stack.DropReason = 255

func TestMalformedDatagrams(t *testing.T) {
	h := newInjectHost(t)
	l2 := h.addDevice(t, geneve.Config{VNI: 42, Remote: peer4, Options: []geneve.OptionKey{{Class: 0xffff, Type: 0x81}}},
		"192.168.42.2/24", "fd42::2/64")
	l3 := h.addDevice(t, geneve.Config{VNI: 43, Remote: peer4, InnerProtoInherit: true}, "192.168.43.2/24")
	mac := tcpip.LinkAddress(l2.MAC())
	frame := ethFrame(mac)
	teb := geneve.ProtoTEB
	devs := map[string]*geneve.Device{"l2": l2, "l3": l3}

	type want struct {
		sock stack.DropReason // socket drop, or none
		dev  string           // device that drops or receives
		drop stack.DropReason // its drop reason, or none for delivered
	}
	sockDrop := func(r stack.DropReason) want { return want{sock: r, drop: none} }
	devDrop := func(dev string, r stack.DropReason) want { return want{sock: none, dev: dev, drop: r} }
	delivered := func(dev string) want { return want{sock: none, dev: dev, drop: none} }

	for _, tc := range []struct {
		name    string
		payload []byte
		want    want
	}{
		{"empty", nil, sockDrop(stack.DropTruncated)},
		{"7 bytes", rawHeader(0, 0, teb, 42)[:7], sockDrop(stack.DropTruncated)},
		{"version 1", slices.Concat(rawHeader(0x40, 0, teb, 42), frame), sockDrop(stack.DropBadHeader)},
		{"version 3", slices.Concat(rawHeader(0xc0, 0, teb, 42), frame), sockDrop(stack.DropBadHeader)},
		{"opt len past the datagram", rawHeader(2, 0, teb, 42, 0xff, 0xff, 1, 0), sockDrop(stack.DropTruncated)},
		{"opt len 63 on a short datagram", slices.Concat(rawHeader(63, 0, teb, 42), frame), sockDrop(stack.DropTruncated)},
		{"option overruns opt len", slices.Concat(rawHeader(1, 0, teb, 42, 0xff, 0xff, 1, 1), frame), sockDrop(stack.DropBadHeader)},
		{"second option overruns opt len", slices.Concat(rawHeader(2, 0, teb, 42, 0xff, 0xff, 1, 0, 0xff, 0xff, 2, 3), frame), sockDrop(stack.DropBadHeader)},
		{"unknown VNI", slices.Concat(rawHeader(0, 0, teb, 4242), frame), sockDrop(stack.DropUnknownTunnel)},
		{"largest VNI", slices.Concat(rawHeader(0, 0, teb, geneve.MaxVNI), frame), sockDrop(stack.DropUnknownTunnel)},
		{"IPv4 protocol on an L2 device", slices.Concat(rawHeader(0, 0, geneve.ProtoIPv4, 42), ipv4Packet()), devDrop("l2", stack.DropNotForUs)},
		{"TEB on an L3 device", slices.Concat(rawHeader(0, 0, teb, 43), frame), devDrop("l3", stack.DropNotForUs)},
		{"MPLS protocol on an L3 device", slices.Concat(rawHeader(0, 0, 0x8847, 43), ipv4Packet()), devDrop("l3", stack.DropNotForUs)},
		{"IPv4 protocol with an IPv6 packet", slices.Concat(rawHeader(0, 0, geneve.ProtoIPv4, 43), ipv6Packet()), devDrop("l3", stack.DropBadHeader)},
		{"IPv6 protocol with an IPv4 packet", slices.Concat(rawHeader(0, 0, geneve.ProtoIPv6, 43), ipv4Packet()), devDrop("l3", stack.DropBadHeader)},
		{"L3 header without a packet", rawHeader(0, 0, geneve.ProtoIPv4, 43), devDrop("l3", stack.DropTruncated)},
		{"L2 header without a frame", rawHeader(0, 0, teb, 42), devDrop("l2", stack.DropTruncated)},
		{"unknown critical option", slices.Concat(rawHeader(1, geneve.FlagCritical, teb, 42, 0x01, 0x02, 0x83, 0), frame), devDrop("l2", stack.DropPolicy)},
		{"unknown critical option without the C bit", slices.Concat(rawHeader(1, 0, teb, 42, 0x01, 0x02, 0x83, 0), frame), devDrop("l2", stack.DropPolicy)},
		{"unknown critical option on an L3 device", slices.Concat(rawHeader(1, geneve.FlagCritical, geneve.ProtoIPv4, 43, 0xff, 0xff, 0x81, 0), ipv4Packet()), devDrop("l3", stack.DropPolicy)},
		{"OAM without a hook", slices.Concat(rawHeader(0, geneve.FlagOAM, teb, 42), frame), devDrop("l2", stack.DropPolicy)},
		{"frame for another MAC", slices.Concat(rawHeader(0, 0, teb, 42), ethFrame("\x02\xbb\x00\x00\x00\x01")), devDrop("l2", stack.DropNotForUs)},
		// Not malformed: the boundaries of what is accepted.
		{"understood critical option", slices.Concat(rawHeader(1, geneve.FlagCritical, teb, 42, 0xff, 0xff, 0x81, 0), frame), delivered("l2")},
		{"unknown non-critical option", slices.Concat(rawHeader(2, 0, teb, 42, 0x01, 0x02, 0x03, 1, 1, 2, 3, 4), frame), delivered("l2")},
		{"C bit without critical options", slices.Concat(rawHeader(0, geneve.FlagCritical, teb, 42), frame), delivered("l2")},
		{"reserved bits set", slices.Concat(rawHeader(0, 0x3f, teb, 42+0), frame), delivered("l2")},
		{"L3 IPv4", slices.Concat(rawHeader(0, 0, geneve.ProtoIPv4, 43), ipv4Packet()), delivered("l3")},
		{"L3 IPv6", slices.Concat(rawHeader(0, 0, geneve.ProtoIPv6, 43), ipv6Packet()), delivered("l3")},
		{"9000-byte frame (no MTU check on receive)", slices.Concat(rawHeader(0, 0, teb, 42), frame, make([]byte, 9000)), delivered("l2")},
	} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/outer6=%v", tc.name, v6), func(t *testing.T) {
				sockBefore := h.sock.Tunnel().Counters().Stats()
				devBefore := map[string]stack.Stats{}
				for n, d := range devs {
					devBefore[n] = d.Counters().Stats()
				}
				h.inject(v6, tc.payload)
				sd := tunneltest.Since(sockBefore, h.sock.Tunnel().Counters())
				if sd.Rx != 1 {
					t.Fatalf("socket received %d datagrams, want 1", sd.Rx)
				}
				wantSock := map[stack.DropReason]uint64{}
				if tc.want.sock != none {
					wantSock[tc.want.sock] = 1
				}
				if fmt.Sprint(sd.Drops) != fmt.Sprint(wantSock) {
					t.Errorf("socket drops %v, want %v", sd.Drops, wantSock)
				}
				for n, d := range devs {
					var want tunneltest.Counts
					if n == tc.want.dev {
						if tc.want.drop != none {
							want.Drops = map[stack.DropReason]uint64{tc.want.drop: 1}
						} else {
							want.Rx = 1
						}
					}
					tunneltest.CheckCounts(t, "device "+n, tunneltest.Since(devBefore[n], d.Counters()).RxOnly(), want)
				}
			})
		}
	}
}
