// Package l2tp implements the data plane of L2TPv3 over UDP (RFC 3931) with
// Ethernet pseudowires (RFC 4719) on the udptunnel framework: the header,
// the tunnel (a Socket) and its sessions (each an L2 Device). Its kernel
// analog is net/l2tp in Linux: l2tp_core.c for the tunnel and sessions,
// l2tp_eth.c for the l2tpeth devices, as configured by `ip l2tp add tunnel
// ... encap udp` and `ip l2tp add session ...` (the "unmanaged" tunnels
// that need no daemon).
//
// An L2TPv3 data message over UDP (RFC 3931 §4.1.2.1) is a 32-bit word with
// the T bit clear and Ver 3, a 32-bit Session ID, an optional cookie of 4 or
// 8 bytes, an optional L2-Specific Sublayer (here only the Default one of
// §4.6, with the S bit and a 24-bit sequence number) and the Ethernet frame.
// The cookie length and the sublayer are per-session configuration, not on
// the wire; see [Header].
//
// # Tunnels, sessions, control plane
//
// [OpenSocket] opens one tunnel: a UDP socket on port 1701 ([DefaultPort])
// connected to the peer. [Socket.AddDevice] adds a session with its local
// and peer Session IDs, cookies, sublayer and sequencing mode. Control
// messages (T bit set), data messages with Session ID 0 and data messages
// for sessions that do not exist are handed back to the socket's plain UDP
// face, [stack.Socket.PacketConn] of [Socket.Tunnel], for a control plane to
// read, as the kernel's l2tp_udp_encap_recv hands them to the L2TP daemon's
// socket. Data messages of another version are dropped (DropBadHeader),
// short ones too (DropTruncated); a cookie mismatch, an old sequence number
// and a missing one where the session requires it are dropped as DropPolicy
// on the session's device.
//
// # What it is not
//
//   - No control protocol: no SCCRQ/ICRQ exchange, no hello keepalives, no
//     AVPs. Tunnels and sessions are configured statically on both ends, as
//     with `ip l2tp`. Tunnel IDs are kept for a control plane but are not on
//     the wire of data messages over UDP.
//   - No L2TPv3 over IP (protocol 115, RFC 3931 §4.1.1), no L2TPv2 (PPP,
//     RFC 2661), no pseudowire types other than Ethernet (no PPP, VLAN
//     or HDLC pseudowires), no ATM-specific sublayer.
//   - No reorder queue: out-of-order packets are discarded, not held (the
//     kernel's behaviour with reorder_timeout 0). Unlike the kernel, a
//     sequence number ahead of the expected one is accepted (lost packets
//     do not stall the session), and the first sequenced packet sets the
//     expected number; see [SeqStats].
//   - Receiving a sequenced packet does not turn on sending sequence
//     numbers (the kernel's LAC-mode auto-enable); set [SeqSend].
//   - Fixed UDP ports, as L2TP uses: no flow-hashed source port.
package l2tp
