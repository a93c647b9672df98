package geneve

import (
	"encoding/binary"
	"errors"
	"iter"
	"strconv"
)

// Protocol constants from RFC 8926 and IANA.
const (
	// HeaderLen is the length of the fixed part of a Geneve header, without
	// options (RFC 8926 §3.4).
	HeaderLen = 8

	// MaxOptionsLen is the largest options area: Opt Len is 6 bits of
	// 4-byte words (RFC 8926 §3.4).
	MaxOptionsLen = 63 * 4

	// MaxHeaderLen is the longest Geneve header, options included.
	MaxHeaderLen = HeaderLen + MaxOptionsLen

	// OptionHeaderLen is the length of a TLV option's header (RFC 8926
	// §3.5).
	OptionHeaderLen = 4

	// MaxOptionDataLen is the most data one option carries: its Length is
	// 5 bits of 4-byte words (RFC 8926 §3.5).
	MaxOptionDataLen = 31 * 4

	// DefaultPort is the IANA-assigned UDP destination port for Geneve
	// (RFC 8926 §3.3), also the Linux default.
	DefaultPort = 6081

	// MaxVNI is the largest Virtual Network Identifier (24 bits).
	MaxVNI = 1<<24 - 1

	// Version is the only Geneve version defined (RFC 8926 §3.4).
	Version = 0
)

// Protocol types carried in the header's Protocol Type field: Ethertypes
// (RFC 8926 §3.4).
const (
	// ProtoTEB is Transparent Ethernet Bridging: the payload is an Ethernet
	// frame (an L2 device).
	ProtoTEB uint16 = 0x6558
	// ProtoIPv4 and ProtoIPv6 carry IP packets directly (an L3 device, the
	// kernel's innerprotoinherit).
	ProtoIPv4 uint16 = 0x0800
	ProtoIPv6 uint16 = 0x86dd
)

// Flag bits of the header's second byte (RFC 8926 §3.4).
const (
	// FlagOAM is the O bit: the packet is a control message, never data
	// for a tenant.
	FlagOAM uint8 = 0x80
	// FlagCritical is the C bit: at least one option has its critical bit
	// set.
	FlagCritical uint8 = 0x40
)

// TypeCritical is the critical bit of an option's Type (RFC 8926 §3.5): a
// receiver that does not understand the option must drop the packet.
const TypeCritical uint8 = 0x80

// VNI is a Geneve Virtual Network Identifier (24 bits).
type VNI uint32

// Valid reports whether v fits in the 24-bit VNI field.
func (v VNI) Valid() bool { return v <= MaxVNI }

// String returns v in decimal, as "ip -d link" shows "geneve id 42".
func (v VNI) String() string { return strconv.FormatUint(uint64(v), 10) }

// Errors returned by [Parse], [Header.Validate] and the option functions.
// They are never wrapped on the packet path, so == works as well as
// errors.Is.
var (
	// ErrTruncated: the buffer is shorter than the fixed header, or than
	// the options its Opt Len announces.
	ErrTruncated = errors.New("geneve: header truncated")
	// ErrVersion: the version is not 0 (RFC 8926 §3.4: a receiver MUST
	// drop packets of an unknown version).
	ErrVersion = errors.New("geneve: unknown version")
	// ErrBadOption: an option's length runs past the end of the options
	// area that Opt Len announces, or fewer than 4 bytes are left for an
	// option header.
	ErrBadOption = errors.New("geneve: malformed option")
	// ErrOptionData: an option's data is not a multiple of 4 bytes or
	// longer than [MaxOptionDataLen] (when building options).
	ErrOptionData = errors.New("geneve: option data must be 0..124 bytes in 4-byte words")
	// ErrOptionsTooLong: the options exceed [MaxOptionsLen].
	ErrOptionsTooLong = errors.New("geneve: options longer than 252 bytes")
)

// Offsets of the fields in a Geneve header.
const (
	hdrVerOptLen = 0 // Ver (2 bits), Opt Len (6 bits)
	hdrFlags     = 1 // O, C, 6 reserved bits
	hdrProto     = 2 // 16 bits
	hdrVNI       = 4 // 24 bits
	hdrReserved  = 7 // 8 bits
)

// Header is a Geneve header stored in a byte slice, followed by the inner
// frame when the slice is longer than [Header.Len]. The layout is RFC 8926
// §3.4:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        Virtual Network Identifier (VNI)       |    Reserved   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	~                    Variable-Length Options                    ~
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The accessors of the fixed part need len(h) >= HeaderLen, Options and
// Payload a whole header: obtain a Header from [Parse] before calling them.
type Header []byte

// Fields contains the fields of a Geneve header that a sender chooses.
// Version and the reserved bits are always written as zero.
type Fields struct {
	// OAM sets the O bit (a control message).
	OAM bool
	// Critical sets the C bit. [Header.Encode] also sets it when any of
	// Options is critical, as RFC 8926 §3.4 requires.
	Critical bool
	// Protocol is the Protocol Type: [ProtoTEB], [ProtoIPv4], [ProtoIPv6].
	Protocol uint16
	// VNI is the Virtual Network Identifier; only the low 24 bits are
	// encoded.
	VNI VNI
	// Options are the TLV options, already encoded (see [AppendOption]);
	// their length must be a multiple of 4 and at most [MaxOptionsLen].
	Options Options
}

// Parse checks that b starts with a valid Geneve header (see
// [Header.Validate]) and returns b as a Header, which aliases b and includes
// the inner frame ([Header.Payload]). It never allocates.
func Parse(b []byte) (Header, error) {
	h := Header(b)
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// Validate checks h against RFC 8926's receive rules, in this order:
//
//   - [ErrTruncated] if h is shorter than HeaderLen;
//   - [ErrVersion] if Ver is not 0 (§3.4);
//   - [ErrTruncated] if h is shorter than the header with the options that
//     Opt Len announces;
//   - [ErrBadOption] if the options do not tile the options area exactly
//     (an option header or data would cross its end, §3.5).
//
// The reserved bits are not checked: §3.4 says receivers MUST ignore them,
// and Linux's geneve_rx does. Neither are the O and C bits, which are
// policy for the receiver (see the package doc).
func (h Header) Validate() error {
	if len(h) < HeaderLen {
		return ErrTruncated
	}
	if h.Version() != Version {
		return ErrVersion
	}
	if len(h) < h.Len() {
		return ErrTruncated
	}
	return h.Options().Validate()
}

// Version returns the 2-bit version.
func (h Header) Version() uint8 { return h[hdrVerOptLen] >> 6 }

// OptLen returns the 6-bit Opt Len field: the options' length in 4-byte
// words.
func (h Header) OptLen() uint8 { return h[hdrVerOptLen] & 0x3f }

// Len returns the whole header's length in bytes, options included:
// 8 + 4*OptLen.
func (h Header) Len() int { return HeaderLen + 4*int(h.OptLen()) }

// Flags returns the second byte: the O and C bits and 6 reserved bits.
func (h Header) Flags() uint8 { return h[hdrFlags] }

// SetFlags sets the second byte (for tests and OAM senders).
func (h Header) SetFlags(f uint8) { h[hdrFlags] = f }

// OAM reports whether the O bit is set.
func (h Header) OAM() bool { return h[hdrFlags]&FlagOAM != 0 }

// Critical reports whether the C bit is set.
func (h Header) Critical() bool { return h[hdrFlags]&FlagCritical != 0 }

// Protocol returns the Protocol Type, an Ethertype.
func (h Header) Protocol() uint16 { return binary.BigEndian.Uint16(h[hdrProto:]) }

// SetProtocol sets the Protocol Type.
func (h Header) SetProtocol(p uint16) { binary.BigEndian.PutUint16(h[hdrProto:], p) }

// VNI returns the Virtual Network Identifier.
func (h Header) VNI() VNI { return VNI(binary.BigEndian.Uint32(h[hdrVNI:]) >> 8) }

// SetVNI sets the VNI, leaving the reserved byte after it unchanged.
func (h Header) SetVNI(v VNI) {
	_ = h[hdrReserved]
	h[hdrVNI] = byte(v >> 16)
	h[hdrVNI+1] = byte(v >> 8)
	h[hdrVNI+2] = byte(v)
}

// Reserved returns the reserved byte after the VNI.
func (h Header) Reserved() uint8 { return h[hdrReserved] }

// Options returns the options area, OptLen*4 bytes after the fixed header.
func (h Header) Options() Options { return Options(h[HeaderLen:h.Len()]) }

// Payload returns the bytes after the header and its options: the inner
// frame.
func (h Header) Payload() []byte { return h[h.Len():] }

// Encode writes a complete header into the first 8+len(f.Options) bytes of
// h: version 0, Opt Len, the O bit, the C bit (set if f.Critical or any
// option is critical), zero reserved bits, the protocol type, the VNI and
// the options. It panics, before writing anything, if h is too short or
// the options' length is not a multiple of 4 up to MaxOptionsLen; it never
// allocates.
func (h Header) Encode(f *Fields) {
	n := len(f.Options)
	if n%4 != 0 || n > MaxOptionsLen {
		panic(ErrOptionsTooLong)
	}
	_ = h[HeaderLen+n-1]
	var flags uint8
	if f.OAM {
		flags |= FlagOAM
	}
	if f.Critical || f.Options.HasCritical() {
		flags |= FlagCritical
	}
	h[hdrVerOptLen] = uint8(n / 4) // Ver = 0
	h[hdrFlags] = flags
	binary.BigEndian.PutUint16(h[hdrProto:], f.Protocol)
	binary.BigEndian.PutUint32(h[hdrVNI:], uint32(f.VNI&MaxVNI)<<8)
	copy(h[HeaderLen:], f.Options)
}

// Options is a sequence of encoded TLV options, the options area of a
// header. Build one with [AppendOption]; walk one with [Options.Next] or
// [Options.All].
type Options []byte

// Option is one encoded TLV option: its 4-byte header and its data. The
// layout is RFC 8926 §3.5:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Option Class         |      Type     |R|R|R| Length  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Variable-Length Option Data                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Options returned by [Options.Next] hold exactly their header and data.
type Option []byte

// OptionKey names an option: its class and its type (critical bit
// included, as the type byte carries it).
type OptionKey struct {
	Class uint16
	Type  uint8
}

// Critical reports whether the key's type has the critical bit.
func (k OptionKey) Critical() bool { return k.Type&TypeCritical != 0 }

// Class returns the option class.
func (o Option) Class() uint16 { return binary.BigEndian.Uint16(o) }

// Type returns the type byte, critical bit included.
func (o Option) Type() uint8 { return o[2] }

// Key returns the option's class and type.
func (o Option) Key() OptionKey { return OptionKey{Class: o.Class(), Type: o.Type()} }

// Critical reports whether the type's critical bit is set.
func (o Option) Critical() bool { return o[2]&TypeCritical != 0 }

// Reserved returns the 3 reserved bits before the length.
func (o Option) Reserved() uint8 { return o[3] >> 5 }

// DataLen returns the Length field converted to bytes: 4 per word.
func (o Option) DataLen() int { return 4 * int(o[3]&0x1f) }

// Data returns the option data.
func (o Option) Data() []byte { return o[OptionHeaderLen:] }

// Next splits the first option off o. It returns [ErrBadOption] if o is not
// empty but too short for the option's header or data; on an empty o it
// returns nil, nil, nil.
func (o Options) Next() (opt Option, rest Options, err error) {
	if len(o) == 0 {
		return nil, nil, nil
	}
	if len(o) < OptionHeaderLen {
		return nil, nil, ErrBadOption
	}
	n := OptionHeaderLen + 4*int(o[3]&0x1f)
	if n > len(o) {
		return nil, nil, ErrBadOption
	}
	return Option(o[:n:n]), o[n:], nil
}

// Validate checks that o is a sequence of whole options.
func (o Options) Validate() error {
	for len(o) > 0 {
		var err error
		if _, o, err = o.Next(); err != nil {
			return err
		}
	}
	return nil
}

// All yields each option of o in order, stopping at the first malformed one;
// use it on validated options (a parsed header's).
func (o Options) All() iter.Seq[Option] {
	return func(yield func(Option) bool) {
		for len(o) > 0 {
			opt, rest, err := o.Next()
			if err != nil || !yield(opt) {
				return
			}
			o = rest
		}
	}
}

// Find returns the first option of o with key k.
func (o Options) Find(k OptionKey) (Option, bool) {
	for len(o) > 0 {
		opt, rest, err := o.Next()
		if err != nil {
			return nil, false
		}
		if opt.Class() == k.Class && opt.Type() == k.Type {
			return opt, true
		}
		o = rest
	}
	return nil, false
}

// HasCritical reports whether any option of o has the critical bit.
func (o Options) HasCritical() bool {
	for len(o) > 0 {
		opt, rest, err := o.Next()
		if err != nil {
			return false
		}
		if opt.Critical() {
			return true
		}
		o = rest
	}
	return false
}

// UnknownCritical returns the first critical option of o whose key is not
// in known (RFC 8926 §3.5.1: the packet carrying it must be dropped).
func (o Options) UnknownCritical(known []OptionKey) (Option, bool) {
	for len(o) > 0 {
		opt, rest, err := o.Next()
		if err != nil {
			return nil, false
		}
		if opt.Critical() && !containsKey(known, opt.Key()) {
			return opt, true
		}
		o = rest
	}
	return nil, false
}

func containsKey(ks []OptionKey, k OptionKey) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// AppendOption appends one encoded option (class, typ, data) to dst and
// returns the extended slice; it allocates only when dst lacks capacity.
// data must be a multiple of 4 bytes, at most [MaxOptionDataLen]
// ([ErrOptionData]), and dst with the option must fit in MaxOptionsLen
// ([ErrOptionsTooLong]). On error dst is returned unchanged.
func AppendOption(dst Options, class uint16, typ uint8, data []byte) (Options, error) {
	if len(data)%4 != 0 || len(data) > MaxOptionDataLen {
		return dst, ErrOptionData
	}
	if len(dst)+OptionHeaderLen+len(data) > MaxOptionsLen {
		return dst, ErrOptionsTooLong
	}
	dst = append(dst, byte(class>>8), byte(class), typ, byte(len(data)/4))
	return append(dst, data...), nil
}
