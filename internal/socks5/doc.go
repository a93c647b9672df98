// Package socks5 provides a SOCKS version 5 server (RFC 1928) with
// username/password authentication (RFC 1929), CONNECT and UDP ASSOCIATE, whose
// outbound side is a Dialer rather than the host's sockets: plugged into a
// *stack.Stack, it lets host applications reach addresses inside the overlay
// through a proxy listening on a host loopback port, without root.
//
// It is not a general-purpose proxy: BIND is refused (command not supported),
// there is no GSSAPI authentication, fragmented UDP datagrams (FRAG != 0) are
// dropped and counted, and DOMAINNAME addresses are resolved only through the
// optional Config.Resolver.
//
// It is an app-facing adapter, not a link endpoint, so it lives in a package
// of its own next to the CLI that wires it (issue 4); it has no kernel analog
// (the kernel's nearest is a socket on a tunnel device's address). The server
// never logs on the data path: Stats counts connections, bytes each way,
// failures by reply code and UDP drops by reason.
package socks5
