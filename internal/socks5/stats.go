package socks5

import "sync/atomic"

// Stats is a snapshot of a server's counters, for an exporter to read.
// Counters only grow, except the Active gauges.
type Stats struct {
	// Connections counts accepted control connections; Active is how many
	// are open now.
	Connections uint64
	Active      uint64
	// HandshakeErrors counts connections closed before a request was read:
	// bad version, malformed or truncated messages, timeouts.
	HandshakeErrors uint64
	// AuthFailures counts rejected credentials and clients that offered no
	// acceptable method.
	AuthFailures uint64
	// Requests counts requests read, by command (CONNECT, BIND, UDP
	// ASSOCIATE; other values in RequestsOther).
	RequestsConnect, RequestsBind, RequestsUDPAssociate, RequestsOther uint64
	// Failures counts failure replies by reply code (index 1 to 8).
	Failures [numReplies]uint64
	// BytesUp counts bytes from clients to targets, BytesDown from targets
	// to clients: TCP stream bytes and UDP payload bytes (no SOCKS headers).
	BytesUp, BytesDown uint64

	// UDPAssociations counts associations created; UDPActive is how many
	// are open now.
	UDPAssociations, UDPActive uint64
	// UDPDatagramsUp and UDPDatagramsDown count datagrams relayed from
	// clients into the overlay and back.
	UDPDatagramsUp, UDPDatagramsDown uint64
	// Dropped datagrams, by reason: FRAG not 0, a source other than the
	// association's client, a header that does not parse, a destination
	// that cannot be resolved or is not supported, and a failed send.
	UDPDropFragment, UDPDropForeignSource, UDPDropMalformed, UDPDropAddress, UDPDropSend uint64
}

// counters are the live counters behind Stats.
type counters struct {
	connections, active, handshakeErrors, authFailures atomic.Uint64
	reqConnect, reqBind, reqUDPAssociate, reqOther     atomic.Uint64
	failures                                           [numReplies]atomic.Uint64
	bytesUp, bytesDown                                 atomic.Uint64
	udpAssociations, udpActive                         atomic.Uint64
	udpUp, udpDown                                     atomic.Uint64
	udpDropFrag, udpDropForeign, udpDropMalformed      atomic.Uint64
	udpDropAddress, udpDropSend                        atomic.Uint64
}

func (c *counters) request(cmd Command) {
	switch cmd {
	case CommandConnect:
		c.reqConnect.Add(1)
	case CommandBind:
		c.reqBind.Add(1)
	case CommandUDPAssociate:
		c.reqUDPAssociate.Add(1)
	default:
		c.reqOther.Add(1)
	}
}

func (c *counters) failure(rep Reply) {
	if rep != ReplySucceeded && int(rep) < numReplies {
		c.failures[rep].Add(1)
	}
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Connections:          c.connections.Load(),
		Active:               c.active.Load(),
		HandshakeErrors:      c.handshakeErrors.Load(),
		AuthFailures:         c.authFailures.Load(),
		RequestsConnect:      c.reqConnect.Load(),
		RequestsBind:         c.reqBind.Load(),
		RequestsUDPAssociate: c.reqUDPAssociate.Load(),
		RequestsOther:        c.reqOther.Load(),
		BytesUp:              c.bytesUp.Load(),
		BytesDown:            c.bytesDown.Load(),
		UDPAssociations:      c.udpAssociations.Load(),
		UDPActive:            c.udpActive.Load(),
		UDPDatagramsUp:       c.udpUp.Load(),
		UDPDatagramsDown:     c.udpDown.Load(),
		UDPDropFragment:      c.udpDropFrag.Load(),
		UDPDropForeignSource: c.udpDropForeign.Load(),
		UDPDropMalformed:     c.udpDropMalformed.Load(),
		UDPDropAddress:       c.udpDropAddress.Load(),
		UDPDropSend:          c.udpDropSend.Load(),
	}
	for i := range c.failures {
		s.Failures[i] = c.failures[i].Load()
	}
	return s
}
