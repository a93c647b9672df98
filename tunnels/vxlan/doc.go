// Package vxlan implements VXLAN (RFC 7348) on the udptunnel framework: the
// header, the forwarding database and the tunnel device. Its kernel analog is
// drivers/net/vxlan in Linux.
//
// VXLAN carries Ethernet frames in UDP: an outer IP/UDP datagram whose payload
// is the 8-byte VXLAN header (a flags byte with the I flag set and a 24-bit
// VXLAN Network Identifier, see [Header]) followed by the inner frame.
//
// # Ports
//
// IANA assigned UDP port 4789 ([DefaultPort]) to VXLAN, and this package uses
// it by default. The Linux kernel predates that assignment: a VXLAN link created without
// "dstport" listens and sends on 8472 ([LinuxDefaultPort]), and iproute2 warns
// about it. To interoperate with such a peer, configure port 8472 explicitly
// on one side or "dstport 4789" on the Linux side.
//
// # ARP/ND proxy
//
// A device with [Config.Proxy] answers, by itself, the ARP requests and IPv6
// neighbour solicitations its inner stack sends for addresses in the device's
// neighbour table ([Device.AddNeighbor]), as a Linux VXLAN device with
// "proxy" does (arp_reduce, neigh_reduce) and as EVPN's ARP suppression
// needs: the reply goes back into the inner stack and the request never
// crosses the overlay. Requests for other addresses are flooded as without
// the proxy, where Linux drops them, so that a partly filled table never
// breaks resolution; [ProxyStats] counts both kinds. Replies are delivered by a
// small per-device goroutine, never on the transmitting one, which may hold
// locks of the inner stack's neighbour cache. Independently of the proxy,
// [Device.SetLocalNeighborHook] reports the (MAC, IP) pairs the device sees
// in the ARP and NDP frames of its local side, for a control plane to
// advertise.
//
// # What it is not
//
// The package speaks plain RFC 7348 VXLAN. It does not implement the
// extensions that reuse the reserved bits — Group Based Policy
// (draft-smith-vxlan-group-policy), VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe,
// UDP port 4790) or Remote Checksum Offload — and, like a Linux VXLAN device
// with none of them enabled, treats packets that use those bits as malformed
// (see [Header.Validate]).
package vxlan
