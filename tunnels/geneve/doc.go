// Package geneve implements Geneve, Generic Network Virtualization
// Encapsulation (RFC 8926), on the udptunnel framework: the header with its
// TLV options, the socket that serves many VNIs on one UDP port and the
// tunnel device. Its kernel analog is drivers/net/geneve.c in Linux
// (`ip link add NAME type geneve id VNI remote ADDR ...`).
//
// Geneve carries a frame in UDP (destination port 6081, [DefaultPort])
// behind an 8-byte header — version, options length, the O (OAM) and C
// (critical) bits, a protocol type and a 24-bit VNI, see [Header] — and up
// to 252 bytes of TLV options ([Options], [Option], [AppendOption]).
//
// # What is supported
//
//   - L2 devices carrying Ethernet (protocol type 0x6558, the default) and
//     L3 devices carrying IPv4/IPv6 with the inner packet's Ethertype as the
//     protocol type (Config.InnerProtoInherit, the kernel's
//     "innerprotoinherit"). A packet whose protocol type does not match the
//     device is dropped (DropNotForUs); an L3 packet whose version nibble
//     disagrees with its protocol type is dropped (DropBadHeader).
//   - The kernel's device options that make sense here: remote, local,
//     dstport, srcport range, ttl, tos (and tos inherit), df
//     set/unset/inherit, flowlabel, udpcsum / udp6zerocsumtx
//     (Config.ZeroChecksum) and udp6zerocsumrx (SocketConfig.Checksum),
//     plus MTU, checksum offload and GSO from the framework.
//   - Options: a device lists the options it understands (Config.Options).
//     Unknown non-critical options are ignored; a critical option the
//     device does not understand drops the packet (DropPolicy, RFC 8926
//     §3.5.1). Every option's critical bit is checked, not only the C bit.
//   - OAM packets (O bit) are never delivered as data: they go to the
//     metadata hook, or are dropped (DropPolicy) when there is none.
//   - Metadata mode, the analog of the kernel's "external"/collect_md used
//     by Open vSwitch and Cilium: Config.OnReceive sees the VNI, outer
//     addresses, TOS/TTL, flags and raw options of every received packet,
//     without allocation; Device.SendFrame sends one frame with per-packet
//     options, flags and destination; Config.TxOptions and
//     Device.SetTxOptions add a fixed option set to every packet the device
//     sends, at no per-packet allocation.
//   - Path MTU from ICMP errors, and ICMP error validation (LookupError).
//
// Drops are counted as Linux's geneve_udp_encap_recv and geneve_rx order
// them: on the socket a short header (DropTruncated), a version other than
// 0 or an option overrunning Opt Len (DropBadHeader) and an unknown VNI
// (DropUnknownTunnel); on the device a protocol type foreign to its layer
// (DropNotForUs, the kernel's rx_dropped), an unknown critical option or an
// OAM packet without a hook (DropPolicy), and the framework's own drops.
//
// # What it is not
//
//   - A metadata-mode device is still bound to one VNI: unlike the kernel's
//     external device it does not receive every VNI of its socket, and
//     SendFrame sends with the device's VNI.
//   - No option is interpreted by the package itself; option semantics are
//     the application's (through the hook and SendFrame).
//   - No "ttl inherit", no multicast remotes, no per-remote FDB (Geneve in
//     Linux is point to point as well); no Geneve-specific GSO type
//     (GSO packets are carried as the framework's VXLAN ones are).
//   - An L3 device carries IPv4 and IPv6 only. Linux since 6.4 accepts any
//     Ethertype with innerprotoinherit (MPLS, ...); the framework's L3
//     device delivers IP alone.
//   - Receive does not require the reserved bits to be zero (RFC 8926 §3.4
//     says to ignore them, as Linux does).
package geneve
