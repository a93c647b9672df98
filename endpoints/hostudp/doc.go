// Package hostudp provides the rootless underlay: a gVisor link endpoint
// (L3, raw IP packets, no link header) that is the underlay NIC of a stack,
// but whose packets leave and arrive through ordinary host UDP sockets. A
// userspace VTEP built on it needs no privileges: the tunnel ports (VXLAN
// 4789, Geneve 6081, GTP-U 2152) are unprivileged.
//
// The outer IP and UDP layer still lives in the stack: the tunnel socket
// writes a complete outer IPv4/IPv6 + UDP packet to the NIC, and the
// endpoint turns it into a sendmsg of its UDP payload to the packet's
// destination address and port. A datagram a host socket receives is
// rebuilt into an IP + UDP packet and injected into the stack, so that the
// tunnel socket sees exactly what it would see on a real wire. The kernel
// analog is not a NIC driver but the pair of a UDP socket and the
// udp_tunnel code above it, turned inside out.
//
// # Address model
//
// The stack's NIC has one address per family (Config.Addrs) that stands
// for the host: it should equal the host address the sockets are bound to
// (Config.Bind, by default the same address), or stand for it when the
// sockets are bound to all host addresses. A received datagram is rebuilt
// with source = the sender's address and port and destination = that stack
// address and the receiving socket's port, whatever host address it was
// really sent to. The stack's outer source address is not used on transmit:
// the host kernel picks the source address of the bound socket (or, with a
// wildcard bind, from its routing table). Remote peers keep their host
// addresses in the stack, unless Config.Aliases gives them stack-side
// names: needed for loopback peers, since gVisor drops 127.0.0.0/8 and ::1
// on a non-loopback NIC.
//
// # Ports
//
// There is one host socket per configured port (Config.Ports) and family.
// A host socket can only send from its own bound port, so the outer source
// port that the stack chose — VXLAN's and Geneve's flow-hashed entropy port
// (udp_flow_src_port) — is lost: a packet leaves from the socket bound to
// its source port if there is one, else from the socket bound to its
// destination port (tunnel peers send to the well-known port and accept any
// source port, and the Linux kernel's VXLAN learns only the address), and
// failing both from the family's first socket (a peer configured to listen
// on another port). A packet of a family without sockets is dropped and
// counted (Drops.NoSocket). The underlay loses its ECMP/RSS entropy that
// way.
//
// # What is kept and what is lost
//
//   - TTL/hop limit and TOS/traffic class (with ECN) travel per packet as
//     IP_TTL/IP_TOS (IPV6_HOPLIMIT/IPV6_TCLASS) control messages.
//   - The IPv6 flow label and IP options are lost.
//   - DF: every host socket runs with IP_PMTUDISC_DO (IPV6_PMTUDISC_DO): the
//     host never fragments an outer datagram, whether or not the stack set
//     DF. A datagram over the host's path MTU is refused and turned into an
//     ICMP "fragmentation needed" / "packet too big" for the stack, so the
//     tunnel lowers its MTU (the kernel's tunnel PMTU behaviour with "df
//     set"). Fragments could not pass a UDP socket as such anyway, and
//     leaving the host to fragment would hide the path MTU from the tunnel.
//   - The stack's outer UDP checksum is not sent: the host kernel computes
//     its own (or none, as its socket is configured). The endpoint advertises
//     checksum offload, so the stack does not compute it either.
//   - Packets that are not UDP (ICMP errors the stack itself sends, such as
//     port unreachable) are dropped and counted (Drops.NotUDP).
//
// # Errors from the host
//
// Each socket has IP_RECVERR / IPV6_RECVERR set. ICMP errors the host
// receives for our datagrams ("fragmentation needed", "packet too big",
// unreachables, time exceeded) are read from the socket's error queue and
// injected into the stack as ICMP packets quoting the outer IP + UDP header
// as it was on the wire (source port = the host socket's port), so that
// the stack's tunnel socket receives them exactly as from a wire (gVisor
// matches them to the tunnel socket by the quoted source port, which is
// the socket's port). A send the host refuses with EMSGSIZE (its path MTU
// is known to be smaller: a route's "mtu lock", an earlier ICMP) becomes a
// synthesized "fragmentation needed" ("packet too big") from the
// destination, carrying the path MTU the host reported in its own
// error-queue entry (SO_EE_ORIGIN_LOCAL, ee_info) and quoting the refused
// datagram, so that the tunnel's ErrorLookup recognises it.
//
// # Checksums of received datagrams
//
// The host kernel has already verified the real UDP checksum (or accepted
// none, as its socket allows). By default the rebuilt datagram still gets a
// correct UDP checksum, computed over the payload just copied, so that a
// capture of the NIC is exact and nothing downstream needs to know about
// this endpoint; the packet is also marked checksum-verified (the endpoint
// advertises receive checksum offload) so the stack does not verify it a
// second time. Config.TrustHostChecksum skips the computation: the field is
// then zero over IPv4 (RFC 768 "no checksum") and 0xffff over IPv6, with the
// packet marked verified.
//
// # Batching and offloads (Linux)
//
// Writes are queued and sent by one goroutine with sendmmsg, consecutive
// datagrams to the same destination with equal sizes coalesced into one
// UDP GSO (UDP_SEGMENT) send when the kernel supports it (probed once per
// socket; a socket whose GSO sends fail with EIO falls back for good). One
// goroutine per socket receives with recvmmsg, with UDP GRO (UDP_GRO) where
// supported: a coalesced datagram is split at the segment size the kernel
// reports. Truncated datagrams (MSG_TRUNC) are dropped and counted.
//
// Writes are queued (Config.QueueLen, 8192 packets by default; a write to
// a full queue is dropped and counted, as a qdisc would): gVisor hands a
// NIC one packet per write, so the queue is where batches form while the
// transmit goroutine is in a syscall.
//
// The stack's outer IP layer must never fragment (fragments cannot pass
// through a UDP socket), so the endpoint's MTU defaults to 65535; the
// tunnel device's own MTU comes from its UnderlayMTU, as usual.
//
// # Performance
//
// The syscalls are batched (tens of datagrams per sendmmsg and recvmmsg
// under load), so per-packet work in the stack dominates: at an overlay
// MTU of 1450 every inner TCP segment is one trip through gVisor's inner
// and outer layers. The inner-offload path (Config.InnerOffset) removes
// that on transmit: the tunnel device passes 64 KiB inner TCP segments
// through (vxlan.Config.GSO with ChecksumOffload), and the endpoint
// segments them inside the tunnel, as the kernel's skb_udp_tunnel_segment
// does, into UDP GSO trains: one trip through the stack and one sendmmsg
// entry per ~44 datagrams. Since the endpoint cannot tell a protocol's
// headers apart, it must be told where the inner IP header is (the
// framework does not record it). On receive, the same mode merges runs of
// datagrams of one read (and the segments of one UDP GRO datagram) that
// carry consecutive segments of one inner TCP flow into one datagram with
// one big inner TCP segment, under the rules of the kernel's UDP tunnel
// GRO and tcp_gro_receive (same outer source, same tunnel bytes, inner
// headers equal but for lengths, IDs, sequence numbers and checksums,
// every inner checksum verified first): the merged datagram still goes
// through the outer IP and UDP layers, the tunnel socket and the device,
// once for up to 64 KiB (Stats.RxMerged, Stats.RxCoalesced). See e2e's
// BenchmarkHostUDP for figures against the kernel's VXLAN.
//
// # Inner checksums (the inner-offload path)
//
// Under the inner-offload path the tunnel device advertises checksum
// offload, so the inner stack verifies no inner checksum: the endpoint
// does, as a NIC that validates a tunnel packet's inner headers
// (CHECKSUM_UNNECESSARY at level 1). For every received datagram whose
// inner packet is IPv4 or IPv6 (by the Ethertype with
// Config.InnerEthernet, else by the version nibble) it verifies the inner
// IPv4 header checksum and, unless the packet is a fragment or has IPv6
// extension headers, its TCP or UDP checksum (a UDP datagram up to its UDP
// length), in the same pass that merging needs; a failure is dropped and
// counted (Drops.InnerChecksum). UDP without a checksum is left to the
// stack's policy, and frames that are not IP pass as they came.
//
// A checksum field that holds exactly the pseudo-header sum is the mark of
// a sender on this host that left the sum to an offload a UDP socket never
// performs: the kernel's CHECKSUM_PARTIAL, which a kernel VXLAN device
// with its default offloads sends over a veth (with TSO, one datagram of up
// to 64 KiB per burst, which the endpoint takes whole). The kernel trusts
// such packets on the same host; the endpoint completes the field from the
// sum it took anyway and counts it (Stats.RxChecksumCompleted), so that the
// stack and a capture see a correct packet. A corrupted packet is accepted
// that way only if its checksum field happens to equal the pseudo-header
// sum, about as likely as its corruption keeping the checksum valid. Not
// handled: a kernel tunnel nested inside the inner packet whose own UDP
// checksum was computed with local checksum offload (it assumes the
// innermost checksum already complete) fails verification. On
// the plain path (no InnerOffset) the inner stack verifies inner
// checksums, and the tunnel device completes partial ones before it does
// (stack.Device.Deliver, stack.Stats.Completed).
//
// # Network namespaces
//
// New opens the host sockets in the network namespace of the calling
// thread. To serve another namespace, call New inside e2e.Netns.Do (or the
// module's internal/netns.Do); the sockets stay in that namespace for their
// lifetime.
//
// # Platforms
//
// Linux only. Elsewhere New returns an error wrapping ErrUnsupported.
package hostudp
