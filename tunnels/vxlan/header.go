package vxlan

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// Protocol constants from RFC 7348 and IANA.
const (
	// HeaderLen is the length of a VXLAN header in bytes.
	HeaderLen = 8

	// DefaultPort is the IANA-assigned UDP destination port for VXLAN.
	DefaultPort = 4789

	// LinuxDefaultPort is the UDP port a Linux VXLAN link uses when it is
	// created without "dstport"; it predates the IANA assignment.
	LinuxDefaultPort = 8472

	// MaxVNI is the largest VXLAN Network Identifier (24 bits).
	MaxVNI = 1<<24 - 1
)

// FlagI is the I flag of the flags byte: "the VNI is valid". RFC 7348 §5
// requires it to be 1; every other flag bit is reserved.
const FlagI uint8 = 0x08

// VNI is a VXLAN Network Identifier, the 24-bit segment ID of RFC 7348.
type VNI uint32

// Valid reports whether v fits in the 24-bit VNI field.
func (v VNI) Valid() bool {
	return v <= MaxVNI
}

// String returns v in decimal, the way "ip -d link" shows "vxlan id 42".
func (v VNI) String() string {
	return strconv.FormatUint(uint64(v), 10)
}

// Errors returned by [Parse] and [Header.Validate]. They are distinct so that
// a device can count each as its own drop reason; they are never wrapped on
// the packet path, so comparing with == works as well as errors.Is.
var (
	// ErrTruncated means the buffer is shorter than [HeaderLen]. The
	// datagram is not VXLAN; drop it.
	ErrTruncated = errors.New("vxlan: header truncated")

	// ErrNoIFlag means the I flag is clear, so the VNI field carries no
	// valid VNI (RFC 7348 §5). Drop the packet; Linux does too.
	ErrNoIFlag = errors.New("vxlan: I flag not set")

	// ErrReservedBits means the I flag is set but a reserved bit is not
	// zero: another flag, the 24 reserved bits after the flags, or the last
	// byte. Such a packet comes from an extension this package does not
	// implement (GBP, GPE, RCO) or from a broken sender. Linux drops it
	// unless the matching extension is enabled; a receiver that wants RFC
	// 7348's "ignore reserved bits" instead may accept it, since the
	// header is otherwise sound.
	ErrReservedBits = errors.New("vxlan: reserved bits set")
)

// Offsets of the fields in a VXLAN header.
const (
	hdrFlags      = 0 // 8 bits
	hdrReserved24 = 1 // 24 bits
	hdrVNI        = 4 // 24 bits
	hdrReserved8  = 7 // 8 bits
)

// Header is a VXLAN header stored in a byte slice, followed by the inner
// Ethernet frame when the slice is longer than [HeaderLen]. The layout is
// RFC 7348 §5:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The accessors do not check the length: obtain a Header from [Parse] (or
// check len >= HeaderLen yourself) before calling them, as with gVisor's
// header types.
type Header []byte

// Fields contains the fields of a VXLAN header that a sender chooses. The
// flags and reserved fields are not in it: [Header.Encode] always writes the
// I flag and zero reserved bits.
type Fields struct {
	// VNI is the VXLAN Network Identifier. Only its low 24 bits are
	// encoded; check [VNI.Valid] when the value is configured.
	VNI VNI
}

// Parse checks that b starts with a valid VXLAN header, as [Header.Validate]
// defines it, and returns b as a Header, which aliases b and includes the
// inner frame ([Header.Payload]). On error it returns nil and one of
// [ErrTruncated], [ErrNoIFlag] or [ErrReservedBits]. It never allocates.
func Parse(b []byte) (Header, error) {
	h := Header(b)
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// Validate checks h against the receive rules of a Linux VXLAN device with
// no extensions enabled (drivers/net/vxlan/vxlan_core.c, vxlan_rcv), which
// are stricter than RFC 7348. It returns, in this order:
//
//   - [ErrTruncated] if len(h) < HeaderLen;
//   - [ErrNoIFlag] if the I flag is clear. RFC 7348 says the flag MUST be
//     1 for a valid VNI, and Linux drops such packets before anything else;
//   - [ErrReservedBits] if any other bit of the first word or the last byte
//     is set. RFC 7348 says receivers MUST ignore reserved bits, but Linux
//     drops the packet, on purpose: the extensions (GBP, GPE, RCO) are
//     defined in those bits, so a packet that uses them means something
//     this receiver would misread as plain VXLAN.
//
// Because of that order, a caller that prefers the RFC's lenient rule can
// accept h when the error is [ErrReservedBits]: the length and the I flag
// have then been checked and the accessors are safe. On a nil error, h holds
// exactly the bytes that [Header.Encode] writes for its VNI.
func (h Header) Validate() error {
	if len(h) < HeaderLen {
		return ErrTruncated
	}
	// The two 32-bit words, as vxlan_rcv sees vx_flags and vx_vni.
	flags := binary.BigEndian.Uint32(h[hdrFlags:])
	vni := binary.BigEndian.Uint32(h[hdrVNI:])
	const flagIWord = uint32(FlagI) << 24
	if flags&flagIWord == 0 {
		return ErrNoIFlag
	}
	if flags != flagIWord || vni&0xff != 0 {
		return ErrReservedBits
	}
	return nil
}

// Flags returns the flags byte: [FlagI] and seven reserved bits.
func (h Header) Flags() uint8 {
	return h[hdrFlags]
}

// SetFlags sets the flags byte. Senders have no reason to write anything but
// [FlagI]; this exists to build test and extension packets.
func (h Header) SetFlags(flags uint8) {
	h[hdrFlags] = flags
}

// HasIFlag reports whether the I flag ("valid VNI") is set.
func (h Header) HasIFlag() bool {
	return h[hdrFlags]&FlagI != 0
}

// Reserved24 returns the 24 reserved bits that follow the flags byte. GBP and
// GPE put their fields here.
func (h Header) Reserved24() uint32 {
	return uint32(h[hdrReserved24])<<16 | uint32(h[hdrReserved24+1])<<8 | uint32(h[hdrReserved24+2])
}

// Reserved8 returns the reserved byte that follows the VNI.
func (h Header) Reserved8() uint8 {
	return h[hdrReserved8]
}

// VNI returns the VXLAN Network Identifier.
func (h Header) VNI() VNI {
	return VNI(binary.BigEndian.Uint32(h[hdrVNI:]) >> 8)
}

// SetVNI sets the VXLAN Network Identifier, leaving the reserved byte after
// it unchanged. Only the low 24 bits of v are written.
func (h Header) SetVNI(v VNI) {
	_ = h[hdrReserved8] // One bounds check for the three stores.
	h[hdrVNI] = byte(v >> 16)
	h[hdrVNI+1] = byte(v >> 8)
	h[hdrVNI+2] = byte(v)
}

// Payload returns the bytes after the header: the inner Ethernet frame.
func (h Header) Payload() []byte {
	return h[HeaderLen:]
}

// Encode writes a complete header into the first [HeaderLen] bytes of h: the
// I flag, the VNI from f and zero in every reserved bit, as Linux's
// vxlan_build_skb does without extensions. It never allocates. Like the
// setters, it panics if len(h) < HeaderLen, before writing anything.
func (h Header) Encode(f *Fields) {
	_ = h[HeaderLen-1] // Fail before the first store, not between them.
	binary.BigEndian.PutUint32(h[hdrFlags:], uint32(FlagI)<<24)
	binary.BigEndian.PutUint32(h[hdrVNI:], uint32(f.VNI&MaxVNI)<<8)
}
