//go:build linux

package tun

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// vxlanSuperPacket builds what our VXLAN device hands the endpoint: an
// outer IPv4 or IPv6 UDP datagram to 4789 (checksum zero or not), VXLAN
// and Ethernet headers, an inner IPv4 TCP super-packet of n data bytes.
func vxlanSuperPacket(v6, zero bool, n int) (*gstack.PacketBuffer, tcpip.Address, tcpip.Address) {
	ol := header.IPv4MinimumSize
	if v6 {
		ol = header.IPv6MinimumSize
	}
	innerNh := ol + 8 + 8 + 14
	innerTh := innerNh + 20
	p := make([]byte, innerTh+20+n)
	var osrc, odst tcpip.Address
	if v6 {
		osrc = tcpip.AddrFrom16([16]byte{0xfd, 0, 2, 1, 15: 1})
		odst = tcpip.AddrFrom16([16]byte{0xfd, 0, 2, 1, 15: 2})
		header.IPv6(p).Encode(&header.IPv6Fields{PayloadLength: uint16(len(p) - ol), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: osrc, DstAddr: odst})
	} else {
		osrc, odst = tcpip.AddrFrom4([4]byte{10, 201, 0, 1}), tcpip.AddrFrom4([4]byte{10, 201, 0, 2})
		header.IPv4(p).Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: osrc, DstAddr: odst})
	}
	u := header.UDP(p[ol:])
	u.Encode(&header.UDPFields{SrcPort: 40000, DstPort: 4789, Length: uint16(len(u))})
	if !zero {
		u.SetChecksum(1) // any: the endpoint rewrites a nonzero one
	}
	binary.BigEndian.PutUint16(p[innerNh-2:], uint16(header.IPv4ProtocolNumber))
	isrc, idst := tcpip.AddrFrom4([4]byte{10, 203, 0, 1}), tcpip.AddrFrom4([4]byte{10, 203, 0, 2})
	header.IPv4(p[innerNh:]).Encode(&header.IPv4Fields{TotalLength: uint16(len(p) - innerNh), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: isrc, DstAddr: idst})
	header.TCP(p[innerTh:]).Encode(&header.TCPFields{SrcPort: 40001, DstPort: 5001, SeqNum: 7, AckNum: 9, DataOffset: 20, Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 1000})
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
	pkt.GSOOptions = gstack.GSO{Type: gstack.GSOTCPv4, MSS: 1398, L3HdrLen: 20, NeedsCsum: true}
	return pkt, isrc, idst
}

// TestWriteTunnelGSO reads back what the endpoint writes for a super-packet
// with tunnel GSO writes on (through a socket pair instead of a TUN): one
// write, the 24-byte header as the kernel's virtio_net_hdr_tnl_to_skb wants
// it, the outer IPv4 header padded with NOP options past its ETH_HLEN-based
// minimum, lengths for the whole packet and partial checksums holding the
// pseudo-header sums. Over IPv6, or with the writes not asked for, the
// super-packet leaves as a UDP GSO train.
func TestWriteTunnelGSO(t *testing.T) {
	for _, c := range []struct {
		name          string
		v6, zero      bool
		writes, whole bool
	}{
		{"ipv4", false, false, true, true}, {"ipv4-zero", false, true, true, true},
		{"ipv6-trains", true, false, true, false}, {"ipv4-writes-off", false, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fds[0])
			defer unix.Close(fds[1])
			unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
			const n = 20000
			pkt, isrc, idst := vxlanSuperPacket(c.v6, c.zero, n)
			defer pkt.DecRef()
			e := newVnetEndpoint(fds[0], 1500, 8+14, 4789, vnetCaps{uso: true, tnl: true, tnlWrites: c.writes})
			if err := e.writePacket(pkt); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1<<17)
			m, err := unix.Read(fds[1], buf)
			if err != nil {
				t.Fatal(err)
			}
			h := parseVirtioNetHdr(buf[:virtioNetHdrTnlSize])
			if !c.whole {
				if s := e.stats(); s.TxTunnelGSO != 0 || s.TxTrains != 1 || h.gsoType != virtioNetHdrGSOUDPL4 {
					t.Fatalf("stats %+v, header %+v: want one UDP GSO train", s, h)
				}
				return
			}
			if s := e.stats(); s.TxTunnelGSO != 1 || s.TxTrains != 0 {
				t.Fatalf("stats %+v, want one tunnel GSO write", s)
			}
			p := buf[virtioNetHdrTnlSize:m]
			const outerTh = 36
			innerNh, innerTh := outerTh+8+8+14, outerTh+8+8+14+20
			wantFlags := uint8(virtioNetHdrFNeedsCsum | virtioNetHdrFUDPTunnelCsum)
			if c.zero {
				wantFlags = virtioNetHdrFNeedsCsum
			}
			want := virtioNetHdr{flags: wantFlags, gsoType: virtioNetHdrGSOTCPv4 | virtioNetHdrGSOUDPTunnelIPv4, hdrLen: uint16(innerTh + 20),
				gsoSize: 1398 - 16 /* the padding comes off the inner MSS */, csumStart: uint16(innerTh), csumOffset: 16,
				outerTh: outerTh, innerNh: uint16(innerNh)}
			if h != want || outerTh < tnlMinOuterTh4 {
				t.Fatalf("header %+v, want %+v", h, want)
			}
			if len(p) != innerTh+20+n {
				t.Fatalf("%d bytes, want %d", len(p), innerTh+20+n)
			}
			ip := header.IPv4(p)
			osrc, odst := ip.SourceAddress(), ip.DestinationAddress()
			if ip.HeaderLength() != 36 || int(ip.TotalLength()) != len(p) || !ip.IsChecksumValid() {
				t.Fatalf("outer IPv4 header: % x", p[:36])
			}
			for _, b := range p[20:36] {
				if b != 1 {
					t.Fatalf("outer IPv4 options are not NOPs: % x", p[20:36])
				}
			}
			u := header.UDP(p[outerTh:])
			if int(u.Length()) != len(u) || u.DestinationPort() != 4789 {
				t.Fatalf("outer UDP header %x", p[outerTh:outerTh+8])
			}
			wantU := uint16(0)
			if !c.zero {
				wantU = header.PseudoHeaderChecksum(header.UDPProtocolNumber, osrc, odst, uint16(len(u)))
			}
			if u.Checksum() != wantU {
				t.Errorf("outer UDP checksum field %#04x, want %#04x", u.Checksum(), wantU)
			}
			iip := header.IPv4(p[innerNh:])
			if int(iip.TotalLength()) != len(p)-innerNh || !iip.IsChecksumValid() {
				t.Errorf("inner IPv4 header: % x", p[innerNh:innerTh])
			}
			if got, w := header.TCP(p[innerTh:]).Checksum(), header.PseudoHeaderChecksum(header.TCPProtocolNumber, isrc, idst, uint16(len(p)-innerTh)); got != w {
				t.Errorf("inner TCP checksum field %#04x, want the pseudo-header sum %#04x", got, w)
			}
		})
	}
}
