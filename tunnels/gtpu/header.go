package gtpu

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// Protocol constants from 3GPP TS 29.281 and IANA.
const (
	// HeaderLen is the length of the mandatory GTP-U header (TS 29.281
	// §5.1): flags, message type, length and TEID.
	HeaderLen = 8

	// LongHeaderLen is the length of the header with the optional
	// sequence number, N-PDU number and next extension header type, present
	// whenever one of the E, S or PN flags is set (TS 29.281 §5.1).
	LongHeaderLen = 12

	// DefaultPort is the IANA-registered UDP port of GTP-U ("gtp-user",
	// TS 29.281 §4.4.2).
	DefaultPort = 2152

	// Version is the only GTP version this package speaks: GTPv1.
	Version = 1
)

// Flag bits of the first octet (TS 29.281 §5.1, Figure 5.1-1). The version
// occupies the top three bits.
const (
	// FlagPT is the Protocol Type bit: 1 for GTP, 0 for GTP' (charging).
	FlagPT uint8 = 0x10
	// FlagE says a next extension header type field is meaningful.
	FlagE uint8 = 0x04
	// FlagS says the sequence number field is meaningful.
	FlagS uint8 = 0x02
	// FlagPN says the N-PDU number field is meaningful.
	FlagPN uint8 = 0x01

	// flagsOptional are the flags whose presence adds the 4 optional
	// octets.
	flagsOptional = FlagE | FlagS | FlagPN
	// flagsV1 is version 1 with PT set: the first octet of a plain G-PDU.
	flagsV1 = Version<<5 | FlagPT
)

// MessageType is the GTP-U message type (TS 29.281 §6.1, Table 6.1-1).
type MessageType uint8

// The GTP-U message types this package knows.
const (
	// EchoRequest probes a peer's liveness (§7.2.1).
	EchoRequest MessageType = 1
	// EchoResponse answers an Echo Request (§7.2.2).
	EchoResponse MessageType = 2
	// ErrorIndication tells a peer that a TEID it used is unknown (§7.3.1).
	ErrorIndication MessageType = 26
	// SupportedExtensionHeadersNotification lists the extension headers a
	// node supports (§7.2.3).
	SupportedExtensionHeadersNotification MessageType = 31
	// EndMarker ends a tunnel's traffic at a handover (§7.3.2).
	EndMarker MessageType = 254
	// GPDU carries a user packet (T-PDU) (§6.1).
	GPDU MessageType = 255
)

// TEID is a Tunnel Endpoint Identifier: which tunnel (PDP context, PDU
// session) at the receiving GTP-U entity a message belongs to.
type TEID uint32

// String returns t in hexadecimal, the way libgtpnl's gtp-tunnel prints it.
func (t TEID) String() string { return "0x" + strconv.FormatUint(uint64(t), 16) }

// Extension header types (TS 29.281 §5.2.1, Figure 5.2.1-3). The top two
// bits of a type say whether the receiver must understand it (§5.2.1,
// Figure 5.2.1-2): 0b10 and 0b11 mean "comprehension required".
const (
	// ExtNone ends the extension header chain.
	ExtNone uint8 = 0x00
	// ExtServiceClassIndicator is TS 29.281 §5.2.2.1.
	ExtServiceClassIndicator uint8 = 0x20
	// ExtUDPPort carries the UDP source port of a triggering message
	// (§5.2.2.1, used in Error Indications).
	ExtUDPPort uint8 = 0x40
	// ExtRANContainer is TS 29.281 §5.2.2.4.
	ExtRANContainer uint8 = 0x81
	// ExtLongPDCPPDUNumber is TS 29.281 §5.2.2.2A.
	ExtLongPDCPPDUNumber uint8 = 0x82
	// ExtXwRANContainer is TS 29.281 §5.2.2.5.
	ExtXwRANContainer uint8 = 0x83
	// ExtNRRANContainer is TS 29.281 §5.2.2.6 (TS 38.425).
	ExtNRRANContainer uint8 = 0x84
	// ExtPDUSessionContainer is TS 29.281 §5.2.2.7 (TS 38.415): the QFI of
	// a 5G PDU session.
	ExtPDUSessionContainer uint8 = 0x85
	// ExtPDCPPDUNumber is TS 29.281 §5.2.2.2.
	ExtPDCPPDUNumber uint8 = 0xc0
)

// ExtComprehensionRequired reports whether a receiving endpoint must
// understand extension header type t to process the message (TS 29.281
// §5.2.1: the top bit of the type is set).
func ExtComprehensionRequired(t uint8) bool { return t&0x80 != 0 }

// Errors returned by [Parse]. Each says why a datagram is not a well-formed
// GTP-U message; they are never wrapped on the packet path, so comparing
// with == works as well as errors.Is.
var (
	// ErrTruncated: the datagram is shorter than the mandatory header, or
	// than the Length field says the message is. Bytes were lost; the
	// receive path counts it as stack.DropTruncated.
	ErrTruncated = errors.New("gtpu: message truncated")
	// ErrVersion: the version field is not 1 (GTPv0 and GTPv2-C use other
	// ports and formats).
	ErrVersion = errors.New("gtpu: version is not 1")
	// ErrProtocolType: the PT bit is 0, GTP' (charging), not GTP.
	ErrProtocolType = errors.New("gtpu: protocol type is GTP'")
	// ErrBadLength: the Length field is too small for the optional fields
	// or the extension headers the header itself announces: the header
	// contradicts itself (stack.DropBadHeader).
	ErrBadLength = errors.New("gtpu: length field too small for the header")
	// ErrBadExtension: an extension header has length 0, which TS 29.281
	// §5.2.1 does not allow (it would never end).
	ErrBadExtension = errors.New("gtpu: extension header of length 0")
)

// Offsets of the fields in a GTP-U header.
const (
	hdrFlags   = 0  // version(3) PT(1) spare(1) E(1) S(1) PN(1)
	hdrType    = 1  // message type
	hdrLength  = 2  // 16 bits: octets after the first 8
	hdrTEID    = 4  // 32 bits
	hdrSeq     = 8  // 16 bits, optional
	hdrNPDU    = 10 // 8 bits, optional
	hdrNextExt = 11 // 8 bits, optional
)

// Header is a GTP-U header stored in a byte slice, followed by its
// extension headers and the T-PDU when the slice is longer. The layout is
// TS 29.281 §5.1, Figure 5.1-1:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Ver=1|P|R|E|S|N| Message Type  |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                Tunnel Endpoint Identifier (TEID)              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        Sequence Number        | N-PDU Number  | Next Ext Type | (E|S|PN)
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Length counts the octets after the first 8: the optional fields, the
// extension headers and the payload. The accessors do not check the
// length: obtain a Header from [Parse] before calling them, as with gVisor's
// header types.
type Header []byte

// Fields contains the fields of a GTP-U header that a sender chooses.
// [Header.Encode] writes version 1 and PT 1; it writes the long header when
// any of S, PN or NextExt is set, with E set when NextExt is non-zero.
type Fields struct {
	// Type is the message type.
	Type MessageType
	// Length is the Length field: the octets after the first 8, so it
	// includes the 4 optional octets when they are present.
	Length uint16
	// TEID is the receiver's tunnel endpoint identifier.
	TEID TEID
	// HasSeq sets the S flag and writes Seq.
	HasSeq bool
	// Seq is the sequence number.
	Seq uint16
	// HasNPDU sets the PN flag and writes NPDU.
	HasNPDU bool
	// NPDU is the N-PDU number.
	NPDU uint8
	// NextExt is the type of the first extension header; non-zero sets
	// the E flag. The caller writes the extension headers after the
	// header.
	NextExt uint8
}

// Parse checks that b is a well-formed GTP-U message, b being the whole
// UDP payload, and returns the part of b the Length field covers (trailing
// bytes beyond it are not part of the message) as a Header. It checks, in
// this order:
//
//   - [ErrTruncated] if len(b) < HeaderLen;
//   - [ErrVersion] if the version is not 1, [ErrProtocolType] if PT is 0;
//   - [ErrTruncated] if b is shorter than 8 + Length;
//   - [ErrBadLength] if Length leaves no room for the optional fields
//     (any of E, S, PN set) or for the extension headers;
//   - [ErrBadExtension] if an extension header has length 0.
//
// It never allocates.
func Parse(b []byte) (Header, error) {
	if _, _, err := scan(b, len(b)); err != nil {
		return nil, err
	}
	return Header(b[:HeaderLen+int(binary.BigEndian.Uint16(b[hdrLength:]))]), nil
}

// scan checks the header at the start of b, a prefix of a datagram of size
// bytes. It returns the length of the whole header (mandatory, optional and
// extension headers) when b holds all of it; or need > 0, the prefix length
// it must see to go on; or an error of [Parse]. It lets the receive path
// pull up only the header of a packet.
func scan(b []byte, size int) (hdrLen, need int, err error) {
	if len(b) < HeaderLen {
		if size < HeaderLen {
			return 0, 0, ErrTruncated
		}
		return 0, HeaderLen, nil
	}
	flags := b[hdrFlags]
	if flags>>5 != Version {
		return 0, 0, ErrVersion
	}
	if flags&FlagPT == 0 {
		return 0, 0, ErrProtocolType
	}
	end := HeaderLen + int(binary.BigEndian.Uint16(b[hdrLength:]))
	if end > size {
		return 0, 0, ErrTruncated
	}
	if flags&flagsOptional == 0 {
		return HeaderLen, 0, nil
	}
	if end < LongHeaderLen {
		return 0, 0, ErrBadLength
	}
	if len(b) < LongHeaderLen {
		return 0, LongHeaderLen, nil
	}
	off := LongHeaderLen
	if flags&FlagE == 0 {
		return off, 0, nil
	}
	// The extension header chain (§5.2.1): each is a length octet in
	// 4-octet units, content, and the next type as its last octet.
	for next := b[hdrNextExt]; next != ExtNone; {
		if off >= end {
			return 0, 0, ErrBadLength
		}
		if len(b) <= off {
			return 0, off + 1, nil
		}
		n := 4 * int(b[off])
		if n == 0 {
			return 0, 0, ErrBadExtension
		}
		if off+n > end {
			return 0, 0, ErrBadLength
		}
		if len(b) < off+n {
			return 0, off + n, nil
		}
		next = b[off+n-1]
		off += n
	}
	return off, 0, nil
}

// Flags returns the first octet: version, PT and the E, S and PN flags.
func (h Header) Flags() uint8 { return h[hdrFlags] }

// SetFlags sets the first octet.
func (h Header) SetFlags(f uint8) { h[hdrFlags] = f }

// Version returns the version field (1 for GTPv1).
func (h Header) Version() uint8 { return h[hdrFlags] >> 5 }

// IsGTP reports whether the PT bit says GTP (not GTP').
func (h Header) IsGTP() bool { return h[hdrFlags]&FlagPT != 0 }

// HasOptional reports whether the 4 optional octets are present (E, S or
// PN set).
func (h Header) HasOptional() bool { return h[hdrFlags]&flagsOptional != 0 }

// HasSeq reports whether the S flag is set.
func (h Header) HasSeq() bool { return h[hdrFlags]&FlagS != 0 }

// HasNPDU reports whether the PN flag is set.
func (h Header) HasNPDU() bool { return h[hdrFlags]&FlagPN != 0 }

// HasExt reports whether the E flag is set.
func (h Header) HasExt() bool { return h[hdrFlags]&FlagE != 0 }

// Type returns the message type.
func (h Header) Type() MessageType { return MessageType(h[hdrType]) }

// SetType sets the message type.
func (h Header) SetType(t MessageType) { h[hdrType] = uint8(t) }

// Length returns the Length field: the octets after the first 8.
func (h Header) Length() uint16 { return binary.BigEndian.Uint16(h[hdrLength:]) }

// SetLength sets the Length field.
func (h Header) SetLength(n uint16) { binary.BigEndian.PutUint16(h[hdrLength:], n) }

// TEID returns the tunnel endpoint identifier.
func (h Header) TEID() TEID { return TEID(binary.BigEndian.Uint32(h[hdrTEID:])) }

// SetTEID sets the tunnel endpoint identifier.
func (h Header) SetTEID(t TEID) { binary.BigEndian.PutUint32(h[hdrTEID:], uint32(t)) }

// Seq returns the sequence number field; meaningful only when [Header.HasSeq]
// and present only when [Header.HasOptional].
func (h Header) Seq() uint16 { return binary.BigEndian.Uint16(h[hdrSeq:]) }

// SetSeq sets the sequence number field of a long header.
func (h Header) SetSeq(s uint16) { binary.BigEndian.PutUint16(h[hdrSeq:], s) }

// NPDU returns the N-PDU number field of a long header.
func (h Header) NPDU() uint8 { return h[hdrNPDU] }

// NextExt returns the next extension header type field of a long header.
func (h Header) NextExt() uint8 { return h[hdrNextExt] }

// HeaderLen returns the length of h's headers: 8, 12, or 12 plus the
// extension headers. h must come from [Parse].
func (h Header) HeaderLen() int {
	n, _, _ := scan(h, len(h))
	return n
}

// Payload returns the bytes after the headers: the T-PDU of a G-PDU, the
// information elements of a signalling message. h must come from [Parse].
func (h Header) Payload() []byte { return h[h.HeaderLen():] }

// Extensions returns an iterator over h's extension headers. h must come
// from [Parse].
func (h Header) Extensions() ExtIter {
	it := ExtIter{h: h, off: LongHeaderLen}
	if h.HasExt() {
		it.next = h.NextExt()
	}
	return it
}

// ExtIter walks the extension header chain of a parsed [Header] without
// allocating.
type ExtIter struct {
	h    Header
	off  int
	next uint8
}

// Next returns the type and bytes of the next extension header, or ok false
// at the end of the chain.
func (it *ExtIter) Next() (typ uint8, e Extension, ok bool) {
	if it.next == ExtNone || it.off >= len(it.h) {
		return 0, nil, false
	}
	n := 4 * int(it.h[it.off])
	if n == 0 || it.off+n > len(it.h) {
		return 0, nil, false
	}
	typ, e = it.next, Extension(it.h[it.off:it.off+n])
	it.off += n
	it.next = e.NextType()
	return typ, e, true
}

// Extension is one extension header (TS 29.281 §5.2.1, Figure 5.2.1-1):
//
//	+----------------+---------------------------+------------------+
//	| Length (4n oct)|  Extension Header Content |  Next Ext Type   |
//	+----------------+---------------------------+------------------+
type Extension []byte

// Len returns the extension header's length in octets.
func (e Extension) Len() int { return 4 * int(e[0]) }

// Content returns the extension header's content, between its length and
// next type octets.
func (e Extension) Content() []byte { return e[1 : e.Len()-1] }

// NextType returns the type of the extension header that follows, or
// [ExtNone].
func (e Extension) NextType() uint8 { return e[e.Len()-1] }

// Encode writes a header into h from f: 8 octets, or 12 when f has S, PN or
// a next extension type. It returns the number of octets written and never
// allocates. It panics if h is too short, before writing anything.
func (h Header) Encode(f *Fields) int {
	flags := uint8(flagsV1)
	if f.HasSeq {
		flags |= FlagS
	}
	if f.HasNPDU {
		flags |= FlagPN
	}
	if f.NextExt != ExtNone {
		flags |= FlagE
	}
	n := HeaderLen
	if flags&flagsOptional != 0 {
		n = LongHeaderLen
	}
	_ = h[n-1]
	h[hdrFlags] = flags
	h[hdrType] = uint8(f.Type)
	binary.BigEndian.PutUint16(h[hdrLength:], f.Length)
	binary.BigEndian.PutUint32(h[hdrTEID:], uint32(f.TEID))
	if n == LongHeaderLen {
		binary.BigEndian.PutUint16(h[hdrSeq:], f.Seq)
		h[hdrNPDU] = f.NPDU
		h[hdrNextExt] = f.NextExt
	}
	return n
}

// Information element types used in GTP-U signalling (TS 29.281 §8).
const (
	// IERecovery is the Recovery IE (§8.2): type 14, one octet, always 0 in
	// GTP-U.
	IERecovery uint8 = 14
	// IETEIDDataI is the Tunnel Endpoint Identifier Data I IE (§8.3).
	IETEIDDataI uint8 = 16
	// IEPeerAddress is the GTP-U Peer Address IE (§8.4).
	IEPeerAddress uint8 = 133
)

// EchoResponseLen is the length of the Echo Response this package sends:
// the long header and the Recovery IE.
const EchoResponseLen = LongHeaderLen + 2

// EncodeEchoResponse writes into b the Echo Response (§7.2.2) to an Echo
// Request with sequence number seq: S flag, TEID 0, the request's sequence
// number and a Recovery IE with value 0 (§8.2), as the kernel's
// gtp1u_send_echo_resp sends. It returns the message length.
func EncodeEchoResponse(b []byte, seq uint16) int {
	_ = b[EchoResponseLen-1]
	Header(b).Encode(&Fields{Type: EchoResponse, Length: EchoResponseLen - HeaderLen, HasSeq: true, Seq: seq})
	b[LongHeaderLen] = IERecovery
	b[LongHeaderLen+1] = 0
	return EchoResponseLen
}

// ErrorIndicationMaxLen is the longest Error Indication this package sends:
// the long header, a UDP Port extension header, TEID Data I and an IPv6
// GTP-U Peer Address.
const ErrorIndicationMaxLen = LongHeaderLen + 4 + 5 + 3 + 16

// EncodeErrorIndication writes into b the Error Indication (§7.3.1) for a
// G-PDU that arrived with the unknown TEID teid, from UDP source port
// srcPort, at local address self: the S flag (§5.1: set in Error
// Indications) with sequence number 0, header TEID 0, a UDP Port extension
// header carrying srcPort (§5.2.2.1), the TEID Data I IE (§8.3, TV) and the
// GTP-U Peer Address IE with self (§8.4, TLV). It returns the message
// length, at most [ErrorIndicationMaxLen].
func EncodeErrorIndication(b []byte, teid TEID, self netip.Addr, srcPort uint16) int {
	addr := self.Unmap().AsSlice()
	n := LongHeaderLen + 4 + 5 + 3 + len(addr)
	_ = b[n-1]
	Header(b).Encode(&Fields{Type: ErrorIndication, Length: uint16(n - HeaderLen), HasSeq: true, NextExt: ExtUDPPort})
	o := LongHeaderLen
	b[o], b[o+1], b[o+2], b[o+3] = 1, byte(srcPort>>8), byte(srcPort), ExtNone
	o += 4
	b[o] = IETEIDDataI
	binary.BigEndian.PutUint32(b[o+1:], uint32(teid))
	o += 5
	b[o] = IEPeerAddress
	binary.BigEndian.PutUint16(b[o+1:], uint16(len(addr)))
	copy(b[o+3:], addr)
	return n
}
