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
// # What it is not
//
// The package speaks plain RFC 7348 VXLAN. It does not implement the
// extensions that reuse the reserved bits — Group Based Policy
// (draft-smith-vxlan-group-policy), VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe,
// UDP port 4790) or Remote Checksum Offload — and, like a Linux VXLAN device
// with none of them enabled, treats packets that use those bits as malformed
// (see [Header.Validate]).
package vxlan
