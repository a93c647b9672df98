package socks5

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// Protocol numbers from RFC 1928 and RFC 1929.
const (
	socksVersion = 0x05 // RFC 1928 §3, VER
	authVersion  = 0x01 // RFC 1929 §2, VER of the username/password subnegotiation
)

// Method is an authentication method (RFC 1928 §3).
type Method byte

// Methods the server knows.
const (
	MethodNoAuth       Method = 0x00
	MethodGSSAPI       Method = 0x01 // not supported
	MethodUserPass     Method = 0x02
	MethodNoAcceptable Method = 0xFF
)

// Command is a request's CMD (RFC 1928 §4).
type Command byte

// Commands.
const (
	CommandConnect      Command = 0x01
	CommandBind         Command = 0x02 // not supported: replied with ReplyCommandNotSupported
	CommandUDPAssociate Command = 0x03
)

func (c Command) String() string {
	switch c {
	case CommandConnect:
		return "CONNECT"
	case CommandBind:
		return "BIND"
	case CommandUDPAssociate:
		return "UDP ASSOCIATE"
	}
	return "command(" + strconv.Itoa(int(c)) + ")"
}

// AddrType is an address's ATYP (RFC 1928 §5).
type AddrType byte

// Address types.
const (
	AddrTypeIPv4   AddrType = 0x01
	AddrTypeDomain AddrType = 0x03
	AddrTypeIPv6   AddrType = 0x04
)

// Reply is a reply's REP field (RFC 1928 §6).
type Reply byte

// Reply codes.
const (
	ReplySucceeded            Reply = 0x00
	ReplyGeneralFailure       Reply = 0x01
	ReplyNotAllowed           Reply = 0x02
	ReplyNetworkUnreachable   Reply = 0x03
	ReplyHostUnreachable      Reply = 0x04
	ReplyConnectionRefused    Reply = 0x05
	ReplyTTLExpired           Reply = 0x06
	ReplyCommandNotSupported  Reply = 0x07
	ReplyAddrTypeNotSupported Reply = 0x08
	numReplies                      = 0x09
)

var replyNames = [numReplies]string{
	"succeeded", "general failure", "connection not allowed by ruleset",
	"network unreachable", "host unreachable", "connection refused",
	"TTL expired", "command not supported", "address type not supported",
}

func (r Reply) String() string {
	if int(r) < len(replyNames) {
		return replyNames[r]
	}
	return "reply(" + strconv.Itoa(int(r)) + ")"
}

// Parse errors. A server closes the connection on any of them, after a reply
// where the protocol has one.
var (
	// ErrVersion: the VER field is not SOCKS 5 (or 1 in RFC 1929).
	ErrVersion = errors.New("socks5: unsupported protocol version")
	// ErrMalformed: a field has a value the RFC forbids.
	ErrMalformed = errors.New("socks5: malformed message")
	// ErrAddrType: the ATYP field is none of IPv4, DOMAINNAME, IPv6.
	ErrAddrType = errors.New("socks5: address type not supported")
)

// Addr is a SOCKS address: an IP or a domain name, and a port. Exactly one of
// IP and Name is set in a parsed Addr.
type Addr struct {
	IP   netip.Addr
	Name string
	Port uint16
}

// AddrFromAddrPort returns ap as an Addr, IPv4-mapped IPv6 unmapped.
func AddrFromAddrPort(ap netip.AddrPort) Addr {
	return Addr{IP: ap.Addr().Unmap(), Port: ap.Port()}
}

// AddrPort returns the address as a netip.AddrPort; it is invalid for a name.
func (a Addr) AddrPort() netip.AddrPort {
	return netip.AddrPortFrom(a.IP, a.Port)
}

func (a Addr) String() string {
	if a.Name != "" {
		return a.Name + ":" + strconv.Itoa(int(a.Port))
	}
	return a.AddrPort().String()
}

// encodedLen is the length of a's ATYP, ADDR and PORT fields.
func (a Addr) encodedLen() int {
	switch {
	case a.Name != "":
		return 1 + 1 + len(a.Name) + 2
	case a.IP.Is4() || !a.IP.IsValid():
		return 1 + 4 + 2
	}
	return 1 + 16 + 2
}

// put writes ATYP, ADDR and PORT into b, which has room for encodedLen bytes.
// An invalid IP is written as 0.0.0.0, an IPv4-mapped IPv6 address as IPv6
// (AddrFromAddrPort unmaps), a name longer than 255 bytes is cut.
func (a Addr) put(b []byte) int {
	n := 0
	switch {
	case a.Name != "":
		name := a.Name
		if len(name) > 255 {
			name = name[:255]
		}
		b[0] = byte(AddrTypeDomain)
		b[1] = byte(len(name))
		n = 2 + copy(b[2:], name)
	case a.IP.Is4() || !a.IP.IsValid():
		b[0] = byte(AddrTypeIPv4)
		var a4 [4]byte
		if a.IP.IsValid() {
			a4 = a.IP.As4()
		}
		n = 1 + copy(b[1:], a4[:])
	default:
		b[0] = byte(AddrTypeIPv6)
		a16 := a.IP.As16()
		n = 1 + copy(b[1:], a16[:])
	}
	binary.BigEndian.PutUint16(b[n:], a.Port)
	return n + 2
}

// readAddr reads ATYP, ADDR and PORT.
func readAddr(r io.Reader, buf []byte) (Addr, error) {
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return Addr{}, err
	}
	var a Addr
	switch AddrType(buf[0]) {
	case AddrTypeIPv4:
		if _, err := io.ReadFull(r, buf[:4+2]); err != nil {
			return Addr{}, err
		}
		a.IP = netip.AddrFrom4([4]byte(buf[:4]))
		a.Port = binary.BigEndian.Uint16(buf[4:])
	case AddrTypeIPv6:
		if _, err := io.ReadFull(r, buf[:16+2]); err != nil {
			return Addr{}, err
		}
		a.IP = netip.AddrFrom16([16]byte(buf[:16]))
		a.Port = binary.BigEndian.Uint16(buf[16:])
	case AddrTypeDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return Addr{}, err
		}
		n := int(buf[0])
		if _, err := io.ReadFull(r, buf[:n+2]); err != nil {
			return Addr{}, err
		}
		if n == 0 {
			return Addr{}, fmt.Errorf("%w: empty domain name", ErrMalformed)
		}
		a.Name = string(buf[:n])
		a.Port = binary.BigEndian.Uint16(buf[n:])
	default:
		return Addr{}, fmt.Errorf("%w (%d)", ErrAddrType, buf[0])
	}
	return a, nil
}

// readGreeting reads the version identifier/method selection message
// (RFC 1928 §3) and returns the offered methods, aliasing buf (≥ 255 bytes).
//
//	+----+----------+----------+
//	|VER | NMETHODS | METHODS  |
//	+----+----------+----------+
//	| 1  |    1     | 1 to 255 |
//	+----+----------+----------+
func readGreeting(r io.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return nil, err
	}
	if buf[0] != socksVersion {
		return nil, fmt.Errorf("%w (%d)", ErrVersion, buf[0])
	}
	n := int(buf[1])
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// readUserPass reads the username/password request (RFC 1929 §2).
//
//	+----+------+----------+------+----------+
//	|VER | ULEN |  UNAME   | PLEN |  PASSWD  |
//	+----+------+----------+------+----------+
//	| 1  |  1   | 1 to 255 |  1   | 1 to 255 |
//	+----+------+----------+------+----------+
func readUserPass(r io.Reader, buf []byte) (user, pass string, err error) {
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return "", "", err
	}
	if buf[0] != authVersion {
		return "", "", fmt.Errorf("%w (%d in username/password request)", ErrVersion, buf[0])
	}
	n := int(buf[1])
	if _, err := io.ReadFull(r, buf[:n+1]); err != nil {
		return "", "", err
	}
	user = string(buf[:n])
	n = int(buf[n])
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return "", "", err
	}
	return user, string(buf[:n]), nil
}

// request is a parsed SOCKS request (RFC 1928 §4).
//
//	+----+-----+-------+------+----------+----------+
//	|VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
//	+----+-----+-------+------+----------+----------+
//	| 1  |  1  | X'00' |  1   | Variable |    2     |
//	+----+-----+-------+------+----------+----------+
type request struct {
	Command Command
	Dst     Addr
}

// readRequest reads a request. RSV is ignored, as most servers do; an unknown
// CMD is returned for the caller to refuse.
func readRequest(r io.Reader, buf []byte) (request, error) {
	if _, err := io.ReadFull(r, buf[:3]); err != nil {
		return request{}, err
	}
	if buf[0] != socksVersion {
		return request{}, fmt.Errorf("%w (%d in request)", ErrVersion, buf[0])
	}
	cmd := Command(buf[1])
	dst, err := readAddr(r, buf)
	if err != nil {
		return request{}, err
	}
	return request{Command: cmd, Dst: dst}, nil
}

// maxReplyLen is the longest reply: VER REP RSV and a domain address.
const maxReplyLen = 3 + 1 + 1 + 255 + 2

// appendReply appends a reply (the request's layout, with REP for CMD).
func appendReply(b []byte, rep Reply, bnd Addr) []byte {
	b = append(b, socksVersion, byte(rep), 0)
	n := len(b)
	b = append(b, make([]byte, bnd.encodedLen())...)
	bnd.put(b[n:])
	return b
}

// UDPHeader is the header of a UDP ASSOCIATE datagram (RFC 1928 §7).
//
//	+----+------+------+----------+----------+----------+
//	|RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
//	+----+------+------+----------+----------+----------+
//	| 2  |  1   |  1   | Variable |    2     | Variable |
//	+----+------+------+----------+----------+----------+
type UDPHeader struct {
	// Frag is the fragment number; the server drops datagrams where it is
	// not 0 (fragmentation is optional in RFC 1928 §7).
	Frag byte
	// Addr is DST.ADDR and DST.PORT: the destination from the client, the
	// source towards it.
	Addr Addr
}

// Len is the encoded length of h.
func (h UDPHeader) Len() int { return 3 + h.Addr.encodedLen() }

// Encode writes h at the start of b and returns its length, or
// io.ErrShortBuffer if b is shorter than h.Len(). It does not allocate.
func (h UDPHeader) Encode(b []byte) (int, error) {
	n := h.Len()
	if len(b) < n {
		return 0, io.ErrShortBuffer
	}
	b[0], b[1], b[2] = 0, 0, h.Frag
	h.Addr.put(b[3:])
	return n, nil
}

// ParseUDPHeader parses the header at the start of b and returns it with the
// payload that follows it (aliasing b). It allocates only for a domain name.
func ParseUDPHeader(b []byte) (UDPHeader, []byte, error) {
	if len(b) < 4 {
		return UDPHeader{}, nil, fmt.Errorf("%w: UDP header truncated", ErrMalformed)
	}
	if b[0] != 0 || b[1] != 0 {
		return UDPHeader{}, nil, fmt.Errorf("%w: UDP header RSV is not zero", ErrMalformed)
	}
	h := UDPHeader{Frag: b[2]}
	rest := b[4:]
	switch AddrType(b[3]) {
	case AddrTypeIPv4:
		if len(rest) < 4+2 {
			return UDPHeader{}, nil, fmt.Errorf("%w: UDP header truncated", ErrMalformed)
		}
		h.Addr.IP = netip.AddrFrom4([4]byte(rest[:4]))
		rest = rest[4:]
	case AddrTypeIPv6:
		if len(rest) < 16+2 {
			return UDPHeader{}, nil, fmt.Errorf("%w: UDP header truncated", ErrMalformed)
		}
		h.Addr.IP = netip.AddrFrom16([16]byte(rest[:16]))
		rest = rest[16:]
	case AddrTypeDomain:
		if len(rest) < 1 || len(rest) < 1+int(rest[0])+2 {
			return UDPHeader{}, nil, fmt.Errorf("%w: UDP header truncated", ErrMalformed)
		}
		n := int(rest[0])
		if n == 0 {
			return UDPHeader{}, nil, fmt.Errorf("%w: empty domain name", ErrMalformed)
		}
		h.Addr.Name = string(rest[1 : 1+n])
		rest = rest[1+n:]
	default:
		return UDPHeader{}, nil, fmt.Errorf("%w (%d)", ErrAddrType, b[3])
	}
	h.Addr.Port = binary.BigEndian.Uint16(rest)
	return h, rest[2:], nil
}
