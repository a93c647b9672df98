package l2tp

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// Protocol constants from RFC 3931 and IANA.
const (
	// DefaultPort is the IANA-assigned UDP port of L2TP (RFC 3931 §4.1.2.2).
	DefaultPort = 1701

	// Version is the value of the Ver field in every L2TPv3 header
	// (RFC 3931 §3.2.1, §4.1.2.1).
	Version = 3

	// HeaderLen is the length of the fixed part of an L2TPv3 data header
	// over UDP: the flags and version word, 16 reserved bits and the
	// Session ID (RFC 3931 §4.1.2.1). A cookie and an L2-Specific Sublayer
	// may follow.
	HeaderLen = 8

	// SublayerLen is the length of the Default L2-Specific Sublayer
	// (RFC 3931 §4.6).
	SublayerLen = 4

	// MaxCookieLen is the longest cookie (64 bits, RFC 3931 §4.1).
	MaxCookieLen = 8

	// MaxSeq is the largest sequence number of the Default L2-Specific
	// Sublayer (24 bits, RFC 3931 §4.6).
	MaxSeq = 1<<24 - 1
)

// Bits of the first 16-bit word (RFC 3931 §3.2.1, §4.1.2.1).
const (
	// FlagT is the T bit: 1 for a control message, 0 for a data message.
	FlagT uint16 = 0x8000
	// verMask selects the 4-bit Ver field (the kernel's L2TP_HDR_VER_MASK).
	verMask uint16 = 0x000f
	// sublayerS is the S bit of the Default L2-Specific Sublayer: the
	// sequence number is valid (RFC 3931 §4.6).
	sublayerS uint32 = 0x40000000
)

// SessionID is an L2TPv3 Session ID: 32 bits, chosen by the receiving end
// (RFC 3931 §4.1). Zero is reserved: over UDP it marks a control message.
type SessionID uint32

// String returns id in decimal, the way `ip l2tp show session` does.
func (id SessionID) String() string { return strconv.FormatUint(uint64(id), 10) }

// L2SpecType says which L2-Specific Sublayer a session carries (the
// kernel's l2spec_type; RFC 3931 §4.6 and §3.2 of the pseudowire RFCs).
type L2SpecType uint8

const (
	// L2SpecNone: no sublayer, the frame follows the cookie (`l2spec_type
	// none`; the kernel's default for Ethernet pseudowires since 4.x).
	L2SpecNone L2SpecType = iota
	// L2SpecDefault: the 4-byte Default L2-Specific Sublayer with the S bit
	// and a 24-bit sequence number (`l2spec_type default`).
	L2SpecDefault
)

// Len returns the number of bytes the sublayer takes on the wire.
func (t L2SpecType) Len() int {
	if t == L2SpecDefault {
		return SublayerLen
	}
	return 0
}

// String returns "none" or "default", as iproute2 spells them.
func (t L2SpecType) String() string {
	switch t {
	case L2SpecNone:
		return "none"
	case L2SpecDefault:
		return "default"
	}
	return "l2spec(" + strconv.Itoa(int(t)) + ")"
}

// Errors returned by the parsers. They are never wrapped on the packet
// path, so comparing with == works as well as errors.Is.
var (
	// ErrTruncated: the buffer is shorter than the header it must hold.
	ErrTruncated = errors.New("l2tp: header truncated")
	// ErrControl: the T bit is set, the message is a control message
	// (RFC 3931 §3.2.1); it belongs to the control plane, not to a session.
	ErrControl = errors.New("l2tp: control message")
	// ErrVersion: the Ver field of a data message is not 3.
	ErrVersion = errors.New("l2tp: version is not 3")
)

// Offsets of the fields of the fixed header.
const (
	hdrFlags     = 0 // 16 bits: T, 11 reserved bits, Ver
	hdrReserved  = 2 // 16 bits
	hdrSessionID = 4 // 32 bits
)

// Header is an L2TPv3 data message header over UDP stored in a byte slice,
// followed by the optional cookie, the optional L2-Specific Sublayer and
// the Ethernet frame. The layout is RFC 3931 §4.1.2.1 and §4.1:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|T|x|x|x|x|x|x|x|x|x|x|x|  Ver  |             Reserved          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      Session ID                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|               Cookie (optional, maximum 64 bits)...
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	                                                                |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 L2-Specific Sublayer (optional)               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The cookie's length and the sublayer's presence are not on the wire: they
// are per-session configuration, so the accessors beyond the Session ID
// take them as arguments. Obtain a Header from [Parse] and check the
// session part with [Header.ValidateSession] before calling them; the
// accessors do not check the length, as with gVisor's header types.
type Header []byte

// Fields are the fields of an L2TPv3 data header a sender chooses. The T
// bit, the version and the reserved bits are not in it: [Header.Encode]
// always writes a data message of version 3 with zero reserved bits.
type Fields struct {
	// SessionID is the receiver's Session ID (the peer_session_id of the
	// sender's session).
	SessionID SessionID
	// Cookie is sent after the Session ID; its length must be 0, 4 or 8.
	Cookie []byte
	// L2Spec says whether the Default L2-Specific Sublayer follows.
	L2Spec L2SpecType
	// SeqValid sets the sublayer's S bit; Seq is then its sequence number
	// (low 24 bits). Both are ignored with L2SpecNone.
	SeqValid bool
	Seq      uint32
}

// Len returns the encoded length of the header f describes.
func (f *Fields) Len() int { return HeaderLen + len(f.Cookie) + f.L2Spec.Len() }

// Parse checks that b starts with the fixed part of an L2TPv3 data header
// over UDP and returns b as a Header, which aliases b. It returns, in the
// order of the kernel's l2tp_udp_recv_core:
//
//   - [ErrTruncated] if b is too short to hold the flags word (2 bytes);
//   - [ErrControl] if the T bit is set, whatever the version: control
//     messages go to the control plane (the kernel passes them to the
//     daemon's socket), and L2TPv2's control messages are among them;
//   - [ErrVersion] if Ver is not 3;
//   - [ErrTruncated] if b is shorter than [HeaderLen].
//
// The eleven x bits and the Reserved field are ignored, as RFC 3931
// §4.1.2.1 requires of receivers. It never allocates.
func Parse(b []byte) (Header, error) {
	if len(b) < 2 {
		return nil, ErrTruncated
	}
	flags := binary.BigEndian.Uint16(b[hdrFlags:])
	if flags&FlagT != 0 {
		return nil, ErrControl
	}
	if flags&verMask != Version {
		return nil, ErrVersion
	}
	if len(b) < HeaderLen {
		return nil, ErrTruncated
	}
	return Header(b), nil
}

// ValidateSession checks that h is long enough for a session's cookie of
// cookieLen bytes and its sublayer: it returns [ErrTruncated] if not. After
// a nil error [Header.Cookie], [Header.Sublayer] and [Header.Payload] with
// the same arguments are safe.
func (h Header) ValidateSession(cookieLen int, l2spec L2SpecType) error {
	if cookieLen < 0 || len(h) < HeaderLen+cookieLen+l2spec.Len() {
		return ErrTruncated
	}
	return nil
}

// Flags returns the first 16-bit word: the T bit, the reserved x bits and
// Ver.
func (h Header) Flags() uint16 { return binary.BigEndian.Uint16(h[hdrFlags:]) }

// SetFlags sets the first 16-bit word, to build test and control packets.
func (h Header) SetFlags(f uint16) { binary.BigEndian.PutUint16(h[hdrFlags:], f) }

// IsControl reports whether the T bit is set.
func (h Header) IsControl() bool { return h.Flags()&FlagT != 0 }

// Version returns the Ver field.
func (h Header) Version() uint8 { return uint8(h.Flags() & verMask) }

// Reserved returns the 16 reserved bits after the flags word.
func (h Header) Reserved() uint16 { return binary.BigEndian.Uint16(h[hdrReserved:]) }

// SessionID returns the Session ID (0 over UDP means a control message).
func (h Header) SessionID() SessionID {
	return SessionID(binary.BigEndian.Uint32(h[hdrSessionID:]))
}

// SetSessionID sets the Session ID.
func (h Header) SetSessionID(id SessionID) {
	binary.BigEndian.PutUint32(h[hdrSessionID:], uint32(id))
}

// Cookie returns the n cookie bytes after the Session ID (aliasing h).
func (h Header) Cookie(n int) []byte { return h[HeaderLen : HeaderLen+n] }

// Sublayer returns the Default L2-Specific Sublayer that follows a cookie
// of cookieLen bytes.
func (h Header) Sublayer(cookieLen int) Sublayer {
	return Sublayer(h[HeaderLen+cookieLen : HeaderLen+cookieLen+SublayerLen])
}

// Payload returns the bytes after the header of a session with a cookie of
// cookieLen bytes and sublayer l2spec: the Ethernet frame.
func (h Header) Payload(cookieLen int, l2spec L2SpecType) []byte {
	return h[HeaderLen+cookieLen+l2spec.Len():]
}

// Encode writes the header f describes into the first f.Len() bytes of h,
// as the kernel's l2tp_build_l2tpv3_header does for UDP encapsulation, and
// returns f.Len(). It never allocates; it panics if h is too short, before
// writing anything.
func (h Header) Encode(f *Fields) int {
	n := f.Len()
	_ = h[n-1]
	binary.BigEndian.PutUint32(h[hdrFlags:], uint32(Version)<<16)
	binary.BigEndian.PutUint32(h[hdrSessionID:], uint32(f.SessionID))
	copy(h[HeaderLen:], f.Cookie)
	if f.L2Spec == L2SpecDefault {
		Sublayer(h[HeaderLen+len(f.Cookie):]).Encode(f.SeqValid, f.Seq)
	}
	return n
}

// Sublayer is the Default L2-Specific Sublayer (RFC 3931 §4.6) stored in a
// byte slice of at least [SublayerLen] bytes:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|x|S|x|x|x|x|x|x|              Sequence Number                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Sublayer []byte

// ParseSublayer returns b as a Sublayer, or [ErrTruncated] if b is shorter
// than [SublayerLen]. The x bits are ignored (RFC 3931 §4.6).
func ParseSublayer(b []byte) (Sublayer, error) {
	if len(b) < SublayerLen {
		return nil, ErrTruncated
	}
	return Sublayer(b), nil
}

// SeqValid reports whether the S bit is set: the sequence number is valid.
func (s Sublayer) SeqValid() bool { return binary.BigEndian.Uint32(s)&sublayerS != 0 }

// Seq returns the 24-bit sequence number.
func (s Sublayer) Seq() uint32 { return binary.BigEndian.Uint32(s) & MaxSeq }

// Encode writes the sublayer: the S bit if valid, the low 24 bits of seq
// (zero when not valid, as the kernel sends it) and zero x bits.
func (s Sublayer) Encode(valid bool, seq uint32) {
	var w uint32
	if valid {
		w = sublayerS | seq&MaxSeq
	}
	binary.BigEndian.PutUint32(s, w)
}
