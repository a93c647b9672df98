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
// It is a plain, small endpoint: one readv and one writev per packet, no
// virtio-net header, no GSO or GRO, no multiqueue, no checksum offload (the
// kernel completes checksums before a packet reaches a TUN without
// TUNSETOFFLOAD, and the stack checks what it receives). Batching and
// performance tuning are a later issue. It is Linux only.
package tun
