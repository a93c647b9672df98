// Package bareudp implements bare UDP tunnels on the udptunnel framework:
// MPLS-in-UDP (RFC 7510) and IP-in-UDP, where the UDP payload is the inner
// packet itself, with no tunnel header. Its kernel analogs are
// drivers/net/bareudp.c (`ip link add type bareudp dstport PORT ethertype
// mpls_uc|ipv4|ipv6 [srcportmin N] [multiproto]`) and, for the label
// stack, net/mpls (af_mpls.c, mpls_iptunnel.c).
//
// A device carries one payload type ([Config.EtherType]): IPv4, IPv6 or MPLS
// unicast. With [Config.Multiproto] an IPv4 device also carries IPv6 and an
// MPLS device also accepts MPLS multicast (datagrams to a multicast outer
// address), as in the kernel. The outer UDP source port carries flow entropy
// ([stack.FlowSrcPort] from [Config.SrcPortMin], RFC 7510 §3); the
// destination port is the socket's, which must be given: bareudp has no
// port of its own ([MPLSPort], 6635, is MPLS-in-UDP's). One socket (port)
// has one device, as one kernel bareudp device owns its port.
//
// # Receive
//
// Datagrams from addresses other than [Config.Remote] are dropped
// (DropPolicy). IP mode checks the version nibble against the ethertype
// (DropBadHeader otherwise, as bareudp_udp_encap_recv does). MPLS mode
// walks the label stack ([ParseLabelStack], RFC 3032) to its bottom and
// pops every entry: labels of [Config.LocalLabels] (the kernel's ILM entry
// "pop and deliver"), explicit nulls (RFC 3032 §2.1, anywhere per RFC 4182,
// which then fix the payload's IP version) and an entropy label indicator
// with its entropy label (RFC 6790). The payload's first nibble gives its
// family. Every drop decided here is counted on the socket
// ([Socket.Tunnel]): DropTruncated, DropBadHeader, DropUnknownTunnel
// (an ordinary label that is not local, or no device), DropPolicy (wrong
// source, label TTL 0 or 1, special-purpose labels not implemented).
//
// # Transmit
//
// IP mode sends the inner packet as the UDP payload; a packet of a family
// the device does not carry is dropped. MPLS mode pushes the label stack of
// the longest route prefix matching the inner destination ([Device.AddRoute],
// a lock-free snapshot), else [Config.Labels]; with neither the packet is
// dropped as DropNoRemote. Label TTLs copy the inner TTL or hop limit (RFC
// 3443's uniform model) unless [Config.LabelTTL] fixes them (pipe model);
// the traffic class is 0. Encapsulation and decapsulation do not allocate.
//
// # What it is not
//
//   - The kernel's bareudp is a collect_md (external) device: its remote and
//     outer fields come per packet from tc/OVS tunnel metadata. Here they
//     are configured per device (Remote, Local, TTL, TOS, DF).
//   - It is not an MPLS router: it pushes labels on IP packets and pops
//     local labels to deliver, but never swaps or forwards by label, and
//     does not process router alert, GAL/G-ACh, OAM alert or extended
//     special-purpose labels (dropped as DropPolicy).
//   - On pop, the label TTL is not copied back into the inner IP header
//     (RFC 3443 uniform model at the egress): the packet is delivered to
//     the inner stack, not forwarded, so only TTLs of 0 and 1 matter and
//     those are dropped.
//   - Where the kernel differs and this package chose otherwise: the
//     kernel's srcportmin defaults to 0 (source ports 0-65534), here to
//     49152 as RFC 7510 §3 recommends; the kernel's device MTU is a fixed
//     1500, here it is derived from the underlay ([Config.UnderlayMTU])
//     like other tunnels; an ipv6 device in the kernel does not check the
//     version nibble, here it must be 6.
//   - ICMP errors for the outer flow are all accepted (the kernel's
//     bareudp_err_lookup accepts everything too: with no header, a quoted
//     datagram cannot be matched to a tunnel); "packet too big" from the
//     remote lowers the device MTU.
//   - TOS is not inherited from the inner header and ECN is not
//     propagated (the kernel's ip_tunnel_ecn_encap/INET_ECN_decapsulate).
package bareudp
