// Package stack hosts gVisor's netstack for udptunnel and implements the
// Linux kernel's UDP tunnel framework on it: the analog of
// include/net/udp_tunnel.h, net/ipv4/udp_tunnel_core.c,
// net/ipv6/ip6_udp_tunnel.c and the shared parts of ip_tunnels.
//
// One Stack hosts both the inner and the outer IP layer, so a tunnelled
// packet enters the same stack twice, as in the kernel:
//
//	send: app socket -> inner IP (ip_local_out #1) -> tunnel Device
//	      -> protocol encapsulation -> Socket.Xmit (udp_tunnel_xmit_skb)
//	      -> outer IP (ip_local_out #2) -> underlay NIC
//	recv: underlay NIC -> outer IP (ip_local_deliver #1) -> UDP demux
//	      -> Socket (a registered transport endpoint) -> Encap.Receive
//	      (encap_rcv) -> Device.Deliver -> inner IP (ip_local_deliver #2)
//
// The pieces:
//
//   - Stack: a gVisor stack with IPv4, IPv6, ARP, UDP, TCP and ICMP, with
//     NIC, address and route helpers that speak net/netip and Dial/Listen
//     helpers that return net.Conn, net.Listener and net.PacketConn.
//   - Socket: a tunnel socket (udp_sock_create + setup_udp_tunnel_sock): a
//     UDP port whose datagrams go to an Encap instead of a socket queue.
//     The receive half is in recv.go, the transmit half in xmit.go.
//   - Device: the tunnel device base that protocols embed: a link endpoint,
//     L2 (Ethernet) or L3, whose writes are handed to the protocol's
//     Transmitter and whose Deliver injects decapsulated packets.
//   - Counters: packets, bytes and drops by reason, per socket and device.
//
// The package does not know any tunnel protocol; those live in
// tunnels/<proto> and plug in through Encap and Transmitter. It never logs
// on the packet path: every drop has a DropReason and a counter.
package stack
