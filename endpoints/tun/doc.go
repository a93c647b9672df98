// Package tun attaches a host TUN device to a stack as an L3 link endpoint:
// IP packets that the host kernel routes into the TUN interface arrive at
// the stack's NIC, and packets the stack sends through that NIC come out of
// the interface into the kernel's IP layer. The kernel analog is the tun
// driver (drivers/net/tun.c) seen from its user side.
//
// Open creates the interface with github.com/songgao/water (IFF_TUN, no
// packet information header), sets its MTU and brings it up with ioctls on
// a socket, and serves it with gVisor's link/fdbased endpoint over the TUN
// file descriptor; OpenIn does the same inside a network namespace, which is
// how tests reach a kernel peer without touching the host's own interfaces.
// Creating a TUN interface needs CAP_NET_ADMIN and /dev/net/tun: without
// them Open fails with an error wrapping ErrPermission or ErrNoTUN.
//
// By default it is a plain, small endpoint: one readv and one writev per
// packet, no virtio-net header, no GSO or GRO, no multiqueue, no checksum
// offload (the kernel completes checksums before a packet reaches a TUN
// without TUNSETOFFLOAD, and the stack checks what it receives).
//
// Config.Offload is an experimental offloaded mode (vnet.go): the TUN is
// opened with IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM|TUN_F_TSO4|
// TUN_F_TSO6) and served by this package's own endpoint, because fdbased
// turns its virtio-net header (and GSO) on only for sockets and skips the
// header unread on receive. The endpoint finishes the partial checksums
// the kernel hands over, and for tunnel datagrams to Config.InnerPort it
// finishes the inner checksums of a tunnel device with checksum and
// segmentation offload. Where the kernel takes UDP-tunnel GSO (Linux
// 6.17+, probed once) the kernel's own tunnel GSO packets are read whole,
// one read per up to 64 KiB, and with Config.TunnelGSOWrites an inner TCP
// GSO super-packet over IPv4 is written whole (its outer header padded
// with NOP options, see there); otherwise super-packets are cut into UDP
// GSO trains (one write per up to 64 KiB, segmented by the kernel's UDP
// layer). BenchmarkTUN (e2e) measures both modes against a
// kernel-to-kernel VXLAN; on Linux 6.18 (2 cores) the offloaded mode with
// tunnel GSO (and TunnelGSOWrites) moved about 7 Gbit/s from our stack to
// the kernel and 10 the other way, against 3.1 and 1.4 with trains and
// 0.75 and 1.3 in the default mode. It is Linux only.
package tun
