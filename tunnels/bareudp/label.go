package bareudp

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// Label is an MPLS label value, the 20-bit field of a label stack entry
// (RFC 3032 §2.1).
type Label uint32

// Special-purpose label values (RFC 3032 §2.1, RFC 7274 §7; IANA's "Special-
// Purpose MPLS Label Values" registry). Values 0-15 are reserved; 16 and up
// are ordinary labels.
const (
	// LabelIPv4ExplicitNull: pop it and treat the payload as IPv4. RFC
	// 4182 allows it anywhere in the stack.
	LabelIPv4ExplicitNull Label = 0
	// LabelRouterAlert: deliver to local software for processing; never
	// at the bottom of the stack.
	LabelRouterAlert Label = 1
	// LabelIPv6ExplicitNull: pop it and treat the payload as IPv6.
	LabelIPv6ExplicitNull Label = 2
	// LabelImplicitNull is signalled by LDP/RSVP meaning "pop", and
	// never appears on the wire.
	LabelImplicitNull Label = 3
	// LabelEntropyIndicator (ELI, RFC 6790) says the next entry is an
	// entropy label.
	LabelEntropyIndicator Label = 7
	// LabelGAL is the Generic Associated Channel label (RFC 5586).
	LabelGAL Label = 13
	// LabelOAMAlert is the OAM alert label (RFC 3429).
	LabelOAMAlert Label = 14
	// LabelExtension (XL, RFC 7274) says the next entry is an extended
	// special-purpose label.
	LabelExtension Label = 15
	// FirstUnreservedLabel is the lowest label a device may use as its
	// own (the kernel's MPLS_LABEL_FIRST_UNRESERVED).
	FirstUnreservedLabel Label = 16
	// MaxLabel is the largest label value (20 bits).
	MaxLabel Label = 1<<20 - 1
)

// Valid reports whether l fits in 20 bits.
func (l Label) Valid() bool { return l <= MaxLabel }

// Reserved reports whether l is one of the special-purpose values 0-15.
func (l Label) Reserved() bool { return l < FirstUnreservedLabel }

// String returns l in decimal, as "ip -f mpls route" shows it.
func (l Label) String() string { return strconv.FormatUint(uint64(l), 10) }

// EntryLen is the length of one label stack entry in bytes.
const EntryLen = 4

// MaxLabelDepth bounds label stacks: the most labels a device pushes, and
// the most entries Parse walks looking for the bottom of the stack. It is
// the kernel's MAX_NEW_LABELS (net/mpls/internal.h).
const MaxLabelDepth = 30

// Errors returned by [ParseLabelStack]. They are never wrapped on the packet
// path, so == works as well as errors.Is.
var (
	// ErrTruncated means the bytes end before an entry with the S bit
	// (bottom of stack) set, or in the middle of an entry.
	ErrTruncated = errors.New("bareudp: MPLS label stack truncated")
	// ErrTooDeep means MaxLabelDepth entries were read without finding
	// the bottom of the stack.
	ErrTooDeep = errors.New("bareudp: MPLS label stack deeper than MaxLabelDepth")
)

// Entry is one MPLS label stack entry as a 32-bit value, in the layout of
// RFC 3032 §2.1:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                Label                  | TC  |S|      TTL      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// TC is the Traffic Class field (formerly EXP, renamed by RFC 5462).
type Entry uint32

// EntryFields are the fields of an Entry.
type EntryFields struct {
	Label         Label // only the low 20 bits are encoded
	TC            uint8 // only the low 3 bits are encoded
	BottomOfStack bool
	TTL           uint8
}

// MakeEntry returns the entry holding f.
func MakeEntry(f EntryFields) Entry {
	e := Entry(f.Label&MaxLabel)<<12 | Entry(f.TC&7)<<9 | Entry(f.TTL)
	if f.BottomOfStack {
		e |= 1 << 8
	}
	return e
}

// Label returns the 20-bit label.
func (e Entry) Label() Label { return Label(e >> 12) }

// TC returns the 3-bit traffic class.
func (e Entry) TC() uint8 { return uint8(e>>9) & 7 }

// BottomOfStack reports whether the S bit is set.
func (e Entry) BottomOfStack() bool { return e&(1<<8) != 0 }

// TTL returns the time-to-live.
func (e Entry) TTL() uint8 { return uint8(e) }

// Fields returns the entry's fields.
func (e Entry) Fields() EntryFields {
	return EntryFields{Label: e.Label(), TC: e.TC(), BottomOfStack: e.BottomOfStack(), TTL: e.TTL()}
}

// LabelStack is an MPLS label stack stored in a byte slice: whole 4-byte
// entries, top of the stack first. A LabelStack from [ParseLabelStack] ends
// exactly at the entry with the S bit; the accessors do not check bounds
// beyond what indexing the slice does.
type LabelStack []byte

// ParseLabelStack returns the label stack at the start of b: the entries up
// to and including the first with the S bit set. The result aliases b; the
// payload starts at b[len(result):]. It fails with [ErrTruncated] if b ends
// first and with [ErrTooDeep] if no S bit is found within [MaxLabelDepth]
// entries. It never allocates.
func ParseLabelStack(b []byte) (LabelStack, error) {
	for n := EntryLen; ; n += EntryLen {
		if n > MaxLabelDepth*EntryLen {
			return nil, ErrTooDeep
		}
		if len(b) < n {
			return nil, ErrTruncated
		}
		if b[n-2]&1 != 0 { // the S bit: low bit of the third byte
			return LabelStack(b[:n:n]), nil
		}
	}
}

// Depth returns the number of entries in s.
func (s LabelStack) Depth() int { return len(s) / EntryLen }

// Entry returns entry i, 0 being the top of the stack.
func (s LabelStack) Entry(i int) Entry {
	return Entry(binary.BigEndian.Uint32(s[i*EntryLen:]))
}

// SetEntry sets entry i.
func (s LabelStack) SetEntry(i int, e Entry) {
	binary.BigEndian.PutUint32(s[i*EntryLen:], uint32(e))
}

// Top returns the top entry.
func (s LabelStack) Top() Entry { return s.Entry(0) }

// Encode writes labels into s as a label stack, top first, each entry with
// traffic class tc and time-to-live ttl, and the S bit on the last one only:
// the push of RFC 3032 §2.4.1 under the uniform TTL model of RFC 3443 §3.1,
// where every pushed label carries the same TTL. s must hold
// len(labels)*EntryLen bytes; it panics, before writing anything, if not.
// It never allocates.
func (s LabelStack) Encode(labels []Label, tc, ttl uint8) {
	if len(labels) == 0 {
		return
	}
	_ = s[len(labels)*EntryLen-1]
	for i, l := range labels {
		s.SetEntry(i, MakeEntry(EntryFields{Label: l, TC: tc, TTL: ttl, BottomOfStack: i == len(labels)-1}))
	}
}
