// Package gtpu implements the user plane of the GPRS Tunnelling Protocol,
// GTPv1-U (3GPP TS 29.281), on the udptunnel framework: the header, the
// sessions (PDP contexts, PDU sessions) and an L3 tunnel device. Its kernel
// analog is the GTPv1-U part of drivers/net/gtp.c in Linux, configured with
// libgtpnl's `gtp-link` and `gtp-tunnel`.
//
// GTP-U carries IP packets (T-PDUs) in UDP on port 2152 ([DefaultPort]): an
// 8-octet header (TS 29.281 §5.1, see [Header]) with a message type, a
// length and the receiver's Tunnel Endpoint Identifier ([TEID]), optionally
// 4 more octets (sequence number, N-PDU number, next extension header type)
// and a chain of extension headers (§5.2).
//
// # What is supported
//
//   - G-PDUs in both directions, on devices of either kernel role
//     ([RoleGGSN], [RoleSGSN]); sessions map an incoming TEID and a UE's
//     IPv4 and/or IPv6 address to an outgoing TEID and a peer, with
//     lock-free lookups on both paths. A received packet whose inner
//     address is not the session's UE is dropped (DropPolicy), as the
//     kernel's gtp_check_ms does.
//   - Received headers with any of the E, S and PN flags and extension
//     header chains, skipped without allocation; a comprehension-required
//     type other than the known containers (PDU Session Container 0x85,
//     RAN containers, PDCP numbers) is dropped as DropPolicy (§5.2.1).
//   - Echo Request (S flag set, TEID 0, else DropBadHeader) is answered with an Echo Response carrying the same
//     sequence number and a Recovery IE of 0 (§7.2.2), from the socket,
//     and counted ([Socket.Stats]); End Marker is consumed and counted.
//   - G-PDUs for unknown TEIDs, Echo Responses, Error Indications and any
//     other message type are handed to the socket's ordinary UDP face
//     (stack.Socket.PacketConn) for a control-plane daemon, as the kernel
//     passes them to userspace.
//   - Optionally (SocketConfig.ErrorIndications, off by default as in the
//     kernel), a G-PDU for an unknown TEID also draws an Error Indication
//     (§7.3.1: TEID Data I and GTP-U Peer Address IEs, UDP Port extension
//     header) to the sender's port 2152, rate-limited by a token bucket.
//   - IPv4 and IPv6 underlays, DF, TTL, TOS, zero UDP checksums, checksum
//     and segmentation offload for in-process underlays, path MTU from
//     ICMP.
//
// # What is not
//
//   - GTPv0 and GTP' (charging); the control plane (GTPv2-C, PFCP).
//   - Supported Extension Headers Notifications (§7.2.3) are not sent for
//     unknown comprehension-required extension headers; the message is
//     dropped and counted. Error Indications received are not acted on
//     (sessions are not torn down): they go to the control plane.
//   - Sending sequence numbers or extension headers (the transmit path
//     writes the plain 8-octet header, as the kernel does), QoS marking
//     from the PDU Session Container's QFI, and the kernel's IPv6 UE
//     prefix (/64) matching: UE addresses match exactly.
//   - Checking that a G-PDU came from the session's peer address (the
//     kernel does not either).
//
// # Differences from the kernel
//
// The kernel passes a datagram whose version is not 1 to its userspace
// daemon; this package drops it as DropBadHeader, since no GTPv1-U daemon
// can use it. The kernel answers Echo Requests only on sockets it created
// and sends the response to port 2152; this package always answers, to the
// request's source port (TS 29.281 §4.4.2.2).
//
// Octets after the end of the message that the Length field gives are
// ignored; a datagram shorter than that length is dropped as truncated.
package gtpu
