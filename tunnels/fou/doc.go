// Package fou implements Foo-over-UDP (FOU), Generic UDP Encapsulation
// (GUE, draft-ietf-intarea-gue-09) and GRE-in-UDP (RFC 8086) on the
// udptunnel framework, with the L3 tunnel devices that use them. Its kernel
// analog is net/ipv4/fou_core.c (`ip fou add port 5555 ipproto 4`, `ip fou
// add port 6080 gue`) together with the ipip, sit/ip6tnl and gre devices
// configured with `encap fou|gue encap-sport auto encap-dport PORT`
// (net/ipv4/ip_tunnel_core.c, net/ipv4/ipip.c, net/ipv4/ip_gre.c).
//
// # Structure
//
// A [Socket] is a receive port (the kernel's struct fou): FOU ports are
// bound to one IP protocol ([ProtoIPIP], [ProtoIPv6] or [ProtoGRE]) and
// resubmit every datagram's payload as that protocol; GUE ports read the
// protocol from the GUE header ([GUE], through gVisor's header.GUE).
// Resubmitted packets reach a [Handler], one per IP protocol per stack,
// shared by all FOU and GUE sockets of that stack, which finds the
// [Device] by the outer (source, destination) pair (and GRE key), checks
// the inner packet and delivers it. A device sends through the socket it
// was added to: FOU devices carry one inner protocol (an IPIP device IPv4,
// an IPv6 device IPv6, a GRE device both, RFC 8086), GUE devices both IPv4
// and IPv6, each packet's named by the GUE Proto field.
//
// Default ports: [GUEPort] (6080, IANA), [GREPort] (4754, IANA, RFC 8086)
// for FOU sockets carrying GRE, and [FOUPort] (5555, no IANA assignment)
// for other FOU sockets.
//
// # What it is not
//
//   - GUE: no optional extensions (§3.3: remote checksum offload, the
//     private flag, ...): a packet with any flag set is dropped as
//     DropBadHeader; extension bytes announced by Hlen without flags are
//     skipped. Control messages (C bit) are dropped as DropPolicy. Devices
//     send variant 0 only; variant 1 is received.
//   - GRE: RFC 2784 and RFC 2890 only; no RFC 1701 routing, no GRE
//     version 1 (PPTP), no keepalives, no sequence-number enforcement
//     (received sequence numbers are ignored, none are sent), no
//     transparent Ethernet bridging (gretap), no ERSPAN. One key for both
//     directions (the kernel's "key", not separate ikey/okey).
//   - No encapsulation of protocols other than IPv4, IPv6 and GRE (MPLS
//     over FOU, for example), no remote-any devices (Remote is required),
//     no "encap-sport" range, no TOS/TTL inheritance.
//   - ICMP errors: "packet too big" for a device's remote lowers its MTU
//     (the socket's stack.ErrorReceiver), but the package has no
//     stack.ErrorLookup (the kernel's gue_err/fou error lookup), so an ICMP
//     error quoting any datagram from the socket's port is believed.
//   - No GRO on receive; GSO on transmit only as stack.DeviceConfig.GSO
//     provides it.
package fou
