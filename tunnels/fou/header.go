package fou

import (
	"encoding/binary"
	"errors"
	"strconv"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Protocol constants from draft-ietf-intarea-gue, RFC 8086 and IANA.
const (
	// GUEPort is the IANA-assigned UDP port for GUE
	// (draft-ietf-intarea-gue §5: "gue", 6080).
	GUEPort = 6080
	// GREPort is the IANA-assigned UDP port for GRE-in-UDP (RFC 8086 §3,
	// "gre-in-udp", 4754).
	GREPort = 4754
	// FOUPort is the port a FOU socket for IPIP or IPv6 listens on when
	// none is configured. FOU has no IANA port; 5555 is the one the Linux
	// documentation and ip-fou(8) examples use.
	FOUPort = 5555

	// GUEHeaderLen is the length of a GUE variant 0 header without
	// extension fields.
	GUEHeaderLen = header.GUEMinimumSize
	// GUEMaxHeaderLen is the longest GUE variant 0 header: Hlen is 5 bits
	// of 32-bit words of extension fields.
	GUEMaxHeaderLen = GUEHeaderLen + 4*31
	// GREHeaderLen is the length of a GRE header without optional fields.
	GREHeaderLen = 4
	// GREMaxHeaderLen is the length of a GRE header with checksum, key and
	// sequence number.
	GREMaxHeaderLen = 16
)

// Errors returned by the parsers. They are never wrapped on the packet path.
var (
	// ErrTruncated means the buffer is shorter than the header it starts.
	ErrTruncated = errors.New("fou: header truncated")
	// ErrBadVersion means the GUE variant or the GRE version is not one
	// this package speaks (GUE 2 and 3, a GUE variant 1 payload that is
	// neither IPv4 nor IPv6, GRE version 1 (PPTP)).
	ErrBadVersion = errors.New("fou: unsupported version")
	// ErrUnknownFlags means a GUE flag or a GRE flag bit this package does
	// not implement is set (GUE's flags field; GRE's routing, strict
	// source route and recursion bits of RFC 1701).
	ErrUnknownFlags = errors.New("fou: unknown flags")
	// ErrHeaderLength means GUE's Hlen runs past the end of the datagram.
	ErrHeaderLength = errors.New("fou: header length overruns the packet")
)

// Proto is the IP protocol a FOU port or tunnel carries: the kernel's
// `ip fou add ... ipproto N`.
type Proto uint8

// The inner protocols supported over FOU and GUE.
const (
	// ProtoAuto is, for a GUE device, "IPv4 and IPv6, named per packet by
	// the GUE header"; for a FOU device, the socket's protocol.
	ProtoAuto Proto = 0
	// ProtoIPIP is IPv4 in IP (RFC 2003), the kernel's ipip device.
	ProtoIPIP Proto = 4
	// ProtoIPv6 is IPv6 in IP (RFC 2473), the kernel's sit/ip6tnl device.
	ProtoIPv6 Proto = 41
	// ProtoGRE is GRE (RFC 2784, RFC 2890), the kernel's gre device;
	// over FOU it is GRE-in-UDP (RFC 8086).
	ProtoGRE Proto = 47
)

// String returns the protocol's name as ip-fou(8) spells it.
func (p Proto) String() string {
	switch p {
	case ProtoAuto:
		return "auto"
	case ProtoIPIP:
		return "ipip"
	case ProtoIPv6:
		return "ipv6"
	case ProtoGRE:
		return "gre"
	}
	return "ipproto-" + strconv.Itoa(int(p))
}

// GUE is a Generic UDP Encapsulation header stored in a byte slice,
// followed by its payload (draft-ietf-intarea-gue-09 §3). The variant 0
// header (§3.1) is read through gVisor's header.GUE:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|0x0|C|   Hlen  |  Proto/ctype  |             Flags             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	~                  Extensions Fields (optional)                 ~
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Variant 1 (§4) has no header at all: the first two bits are 01 and the
// UDP payload is an IPv4 (0100) or IPv6 (0110) packet.
//
// Obtain a GUE from [ParseGUE]; the accessors do not check the length.
type GUE []byte

// GUEFields are the fields of a variant 0 GUE header that a sender chooses.
type GUEFields struct {
	// Control marks a control message; Proto is then its ctype.
	Control bool
	// Proto is the IP protocol of the payload (or the control type).
	Proto uint8
	// Flags are the flags field (§3.2.1); this package defines none.
	Flags uint16
	// ExtLen is the length of the extension fields in bytes (a multiple
	// of 4, at most 124; Encode rounds down and clamps), whose bytes
	// Encode leaves as they are.
	ExtLen int
}

// ParseGUE checks that b starts with a GUE header this package can
// receive and returns it. Variant 1 needs only its first byte; variant 0
// needs its whole header, extension fields included (§3.1: Hlen counts
// 32-bit words after the first), and no flags set, since this package
// implements no optional extension (§3.3: an unknown flag means the
// packet cannot be processed). It never allocates and returns
// [ErrTruncated], [ErrBadVersion], [ErrHeaderLength] or [ErrUnknownFlags].
// A control message (C bit) parses: refusing it is the receiver's policy.
func ParseGUE(b []byte) (GUE, error) {
	if len(b) < 1 {
		return nil, ErrTruncated
	}
	h := GUE(b)
	switch h.Variant() {
	case 0:
	case 1:
		// §4: 01 followed by the IPv4 (0100) or IPv6 (0110) version.
		if v := b[0] >> 4; v != 4 && v != 6 {
			return nil, ErrBadVersion
		}
		return h, nil
	default:
		return nil, ErrBadVersion
	}
	if len(b) < GUEHeaderLen {
		return nil, ErrTruncated
	}
	if h.HeaderLen() > len(b) {
		return nil, ErrHeaderLength
	}
	if h.Flags() != 0 {
		return nil, ErrUnknownFlags
	}
	return h, nil
}

// Variant returns the two-bit variant (§3.1's "Ver"): 0 or 1 for GUE.
func (h GUE) Variant() uint8 { return header.GUE(h).TypeAndControl() >> 1 }

// Control reports whether the C bit marks a control message (variant 0).
func (h GUE) Control() bool { return header.GUE(h).TypeAndControl()&1 != 0 }

// HeaderLen returns the length of the variant 0 header with its extension
// fields, in bytes; 0 for variant 1, which has no header.
func (h GUE) HeaderLen() int {
	if h.Variant() == 1 {
		return 0
	}
	return int(header.GUE(h).HeaderLength())
}

// Proto returns the Proto/ctype field (variant 0).
func (h GUE) Proto() uint8 { return header.GUE(h).Protocol() }

// InnerProto returns the IP protocol of the payload: the Proto field in
// variant 0, IPIP (4) or IPv6 (41) by the IP version in variant 1.
func (h GUE) InnerProto() uint8 {
	if h.Variant() == 1 {
		if h[0]>>4 == 4 {
			return uint8(ProtoIPIP)
		}
		return uint8(ProtoIPv6)
	}
	return h.Proto()
}

// Flags returns the 16-bit flags field (variant 0).
func (h GUE) Flags() uint16 { return binary.BigEndian.Uint16(h[2:]) }

// SetFlags sets the flags field.
func (h GUE) SetFlags(f uint16) { binary.BigEndian.PutUint16(h[2:], f) }

// Payload returns the bytes after the header and its extension fields.
func (h GUE) Payload() []byte { return h[h.HeaderLen():] }

// Encode writes a variant 0 header from f into the first four bytes of h
// through gVisor's header.GUE, then the flags. It never allocates and
// panics, before writing, if h is shorter than GUEHeaderLen.
func (h GUE) Encode(f *GUEFields) {
	_ = h[GUEHeaderLen-1]
	ext := min(max(f.ExtLen, 0)&^3, GUEMaxHeaderLen-GUEHeaderLen) // Hlen is 5 bits
	header.GUE(h).Encode(&header.GUEFields{
		Type:         0,
		Control:      f.Control,
		HeaderLength: uint8(GUEHeaderLen + ext),
		Protocol:     f.Proto,
	})
	h.SetFlags(f.Flags)
}

// GRE flag bits in the first 16 bits of a GRE header (RFC 2784 §2,
// RFC 2890 §2).
const (
	GREFlagChecksum uint16 = 0x8000 // C: checksum and reserved1 present
	GREFlagRouting  uint16 = 0x4000 // R (RFC 1701): must be zero
	GREFlagKey      uint16 = 0x2000 // K: key present (RFC 2890)
	GREFlagSeq      uint16 = 0x1000 // S: sequence number present (RFC 2890)
	greVersionMask  uint16 = 0x0007
)

// GRE is a GRE header (RFC 2784 §2.1 with RFC 2890's key and sequence
// number) stored in a byte slice, followed by its payload:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|C| |K|S| Reserved0       | Ver |         Protocol Type         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Checksum (optional)      |       Reserved1 (Optional)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Key (optional)                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Sequence Number (Optional)                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Obtain a GRE from [ParseGRE]; the accessors do not check the length.
type GRE []byte

// GREFields are the fields of a GRE header that a sender chooses.
type GREFields struct {
	// Protocol is the EtherType of the payload (0x0800, 0x86DD).
	Protocol uint16
	// Checksum asks for the checksum field; Encode writes it as zero and
	// [GRE.SetChecksum] fills it in once the payload is known.
	Checksum bool
	// HasKey and Key are RFC 2890's key field.
	HasKey bool
	Key    uint32
	// HasSeq and Seq are RFC 2890's sequence number.
	HasSeq bool
	Seq    uint32
}

// Len returns the length of the header f describes.
func (f *GREFields) Len() int {
	n := GREHeaderLen
	if f.Checksum {
		n += 4
	}
	if f.HasKey {
		n += 4
	}
	if f.HasSeq {
		n += 4
	}
	return n
}

// ParseGRE checks that b starts with a GRE header a receiver may process
// and returns it: version 0 (RFC 2784 §2.3.1; version 1 is PPTP), none of
// the RFC 1701 bits (routing, strict source route, recursion; RFC 2784
// §2.3: a receiver MUST discard a packet where bits 1-5 are non-zero; 2
// and 3 are RFC 2890's K and S), and all the optional fields its flags
// announce. Bits 6-12 are ignored, as RFC 2784 requires. It never
// allocates and returns [ErrTruncated], [ErrBadVersion] or
// [ErrUnknownFlags]. It does not verify the checksum.
func ParseGRE(b []byte) (GRE, error) {
	if len(b) < GREHeaderLen {
		return nil, ErrTruncated
	}
	h := GRE(b)
	f := h.Flags()
	if f&greVersionMask != 0 {
		return nil, ErrBadVersion
	}
	if f&(GREFlagRouting|0x0800|0x0400) != 0 {
		return nil, ErrUnknownFlags
	}
	if len(b) < h.HeaderLen() {
		return nil, ErrTruncated
	}
	return h, nil
}

// Flags returns the first 16 bits: the flags, reserved0 and version.
func (h GRE) Flags() uint16 { return binary.BigEndian.Uint16(h) }

// Protocol returns the protocol type (an EtherType).
func (h GRE) Protocol() uint16 { return binary.BigEndian.Uint16(h[2:]) }

// HasChecksum reports whether the C bit is set.
func (h GRE) HasChecksum() bool { return h.Flags()&GREFlagChecksum != 0 }

// HasKey reports whether the K bit is set.
func (h GRE) HasKey() bool { return h.Flags()&GREFlagKey != 0 }

// HasSeq reports whether the S bit is set.
func (h GRE) HasSeq() bool { return h.Flags()&GREFlagSeq != 0 }

// HeaderLen returns the header's length with the optional fields its
// flags announce.
func (h GRE) HeaderLen() int {
	n := GREHeaderLen
	f := h.Flags()
	if f&GREFlagChecksum != 0 {
		n += 4
	}
	if f&GREFlagKey != 0 {
		n += 4
	}
	if f&GREFlagSeq != 0 {
		n += 4
	}
	return n
}

// Checksum returns the checksum field (0 when absent).
func (h GRE) Checksum() uint16 {
	if !h.HasChecksum() {
		return 0
	}
	return binary.BigEndian.Uint16(h[4:])
}

// SetChecksum sets the checksum field; the C bit must be set.
func (h GRE) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[4:], c) }

// Key returns the key field (0 when absent).
func (h GRE) Key() uint32 {
	if !h.HasKey() {
		return 0
	}
	if h.HasChecksum() {
		return binary.BigEndian.Uint32(h[8:])
	}
	return binary.BigEndian.Uint32(h[4:])
}

// Seq returns the sequence number field (0 when absent).
func (h GRE) Seq() uint32 {
	if !h.HasSeq() {
		return 0
	}
	return binary.BigEndian.Uint32(h[h.HeaderLen()-4:])
}

// Payload returns the bytes after the header.
func (h GRE) Payload() []byte { return h[h.HeaderLen():] }

// Encode writes the header f describes into the first f.Len() bytes of h,
// with a zero checksum and reserved1. It never allocates and panics,
// before writing, if h is too short.
func (h GRE) Encode(f *GREFields) {
	n := f.Len()
	_ = h[n-1]
	var flags uint16
	off := GREHeaderLen
	if f.Checksum {
		flags |= GREFlagChecksum
		binary.BigEndian.PutUint32(h[off:], 0)
		off += 4
	}
	if f.HasKey {
		flags |= GREFlagKey
		binary.BigEndian.PutUint32(h[off:], f.Key)
		off += 4
	}
	if f.HasSeq {
		flags |= GREFlagSeq
		binary.BigEndian.PutUint32(h[off:], f.Seq)
	}
	binary.BigEndian.PutUint16(h, flags)
	binary.BigEndian.PutUint16(h[2:], f.Protocol)
}
