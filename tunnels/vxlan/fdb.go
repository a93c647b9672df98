package vxlan

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the VXLAN forwarding database, the analog of struct vxlan_fdb
// and struct vxlan_rdst in Linux's drivers/net/vxlan (vxlan_core.c,
// vxlan_private.h): static entries as "bridge fdb add/append/del" makes them,
// learning as vxlan_snoop does it, ageing as vxlan_cleanup does it, and the
// transmit lookup of vxlan_xmit.

// MAC is an Ethernet (EUI-48) address. It is comparable, so it can be a map
// key, and it never allocates, unlike net.HardwareAddr.
type MAC [6]byte

// ParseMAC parses s as an EUI-48 address in any form net.ParseMAC accepts
// ("02:00:5e:10:00:01", "02-00-5E-10-00-01", "0200.5e10.0001"). It rejects
// the 64- and 160-bit forms net.ParseMAC also knows.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, fmt.Errorf("vxlan: %w", err)
	}
	if len(hw) != len(MAC{}) {
		return MAC{}, fmt.Errorf("vxlan: %q is not a 48-bit MAC address", s)
	}
	return MAC(hw), nil
}

// String returns m as six lower-case hex pairs separated by colons, the form
// of net.HardwareAddr and "bridge fdb show".
func (m MAC) String() string {
	const hexDigits = "0123456789abcdef"
	var b [3*len(m) - 1]byte
	for i, x := range m {
		if i > 0 {
			b[3*i-1] = ':'
		}
		b[3*i] = hexDigits[x>>4]
		b[3*i+1] = hexDigits[x&0xf]
	}
	return string(b[:])
}

// IsMulticast reports whether m has the group bit set, which includes the
// broadcast address (the kernel's is_multicast_ether_addr).
func (m MAC) IsMulticast() bool {
	return m[0]&1 != 0
}

// IsZero reports whether m is 00:00:00:00:00:00, the key of the default
// entry (the kernel's all_zeros_mac).
func (m MAC) IsZero() bool {
	return m == MAC{}
}

// Remote is a remote VTEP that frames for a MAC address are sent to: the
// analog of struct vxlan_rdst. Zero Port and VNI mean the device's own, as a
// kernel entry without "port" or "vni" does.
type Remote struct {
	// Addr is the outer destination address: a unicast VTEP or, as the
	// kernel allows, a multicast group. An IPv4-mapped IPv6 address is
	// stored as plain IPv4, so that entries and learned sources compare
	// equal whichever socket family delivered them.
	Addr netip.Addr
	// Port is the outer UDP destination port; 0 means the device's.
	Port uint16
	// VNI is the VNI to send with; 0 means the device's.
	VNI VNI
}

// DefaultAgeingTime is the kernel's default ageing time for learned entries
// (FDB_AGE_DEFAULT, "ip link ... ageing 300"). A device applies it when its
// configuration does not say otherwise; FDBConfig's zero value means no
// ageing.
const DefaultAgeingTime = 300 * time.Second

// FDBConfig configures an FDB. The zero value means no limit and no ageing.
type FDBConfig struct {
	// MaxEntries caps the number of entries of every kind, static, learned
	// and the default entry, as the kernel's "maxaddress" caps addrcnt.
	// 0 (or less) means unlimited.
	MaxEntries int
	// AgeingTime is how long a learned entry survives without being
	// confirmed by Learn ("ageing"). 0 (or less) means learned entries
	// never age; see DefaultAgeingTime.
	AgeingTime time.Duration
}

// Errors returned by the FDB's configuration methods. They are always
// wrapped with the operation, MAC address and remote concerned (hence no
// "vxlan:" prefix of their own); test them with errors.Is.
var (
	// ErrFDBFull means the entry would exceed FDBConfig.MaxEntries (the
	// kernel's ENOSPC). Delete or flush entries, or raise the limit.
	ErrFDBFull = errors.New("forwarding database full")

	// ErrFDBNotFound means there is no entry for the MAC address, or the
	// entry has no such remote (the kernel's ENOENT).
	ErrFDBNotFound = errors.New("forwarding database entry not found")

	// ErrFDBInvalidRemote means the remote cannot be sent to: its address
	// is missing or unspecified, or its VNI does not fit in 24 bits.
	ErrFDBInvalidRemote = errors.New("invalid remote")

	// ErrFDBUnicastAppend means Append was asked to give a unicast MAC a
	// second remote. Only the default entry and multicast entries
	// replicate to several remotes; use Add to replace a unicast remote.
	ErrFDBUnicastAppend = errors.New("cannot append a second remote to a unicast entry")
)

// LearnResult says what Learn did with a source address. The constants'
// comments also say what Linux does with the frame in that case, since the
// device, not the FDB, decides whether to deliver it.
type LearnResult uint8

const (
	// LearnRefreshed: a learned entry already points at the sender; its
	// ageing restarted. The common case.
	LearnRefreshed LearnResult = iota
	// LearnAdded: a new learned entry now points at the sender.
	LearnAdded
	// LearnMoved: a learned entry pointed at another remote and now points
	// at the sender (the kernel's "migrated" message).
	LearnMoved
	// LearnStatic: a static entry already points at the sender; nothing
	// changed.
	LearnStatic
	// LearnStaticConflict: a static entry points at another remote and was
	// left alone. Linux drops such a frame (vxlan_snoop: "Don't migrate
	// static entries, drop packets").
	LearnStaticConflict
	// LearnRejectedFull: the source is unknown and the table is at
	// MaxEntries, so nothing was learned. Linux still delivers the frame.
	LearnRejectedFull
	// LearnIgnored: the source MAC is multicast or all-zeros, so it cannot
	// be learned; Linux drops such a frame before learning
	// (vxlan_set_mac). Also returned, with nothing changed, when from has
	// no address, an unspecified one or an invalid VNI.
	LearnIgnored

	numLearnResults
)

var learnResultNames = [numLearnResults]string{
	LearnRefreshed:      "refreshed",
	LearnAdded:          "added",
	LearnMoved:          "moved",
	LearnStatic:         "static",
	LearnStaticConflict: "static_conflict",
	LearnRejectedFull:   "rejected_full",
	LearnIgnored:        "ignored",
}

// String returns the result's snake_case name.
func (r LearnResult) String() string {
	if r < numLearnResults {
		return learnResultNames[r]
	}
	return fmt.Sprintf("learn_result_%d", uint8(r))
}

// Entry is one forwarding entry as Entries lists it ("bridge fdb show").
type Entry struct {
	MAC MAC
	// Remotes are the VTEPs frames for MAC go to, in the order they were
	// added. A copy: the caller may modify it.
	Remotes []Remote
	// Static is true for entries made by Add or Append, which never age
	// and which learning never moves; false for learned entries.
	Static bool
	// Age is the time, on the FDB's coarse clock (see FDB.Tick), since a
	// learned entry was last confirmed by Learn, or since a static entry
	// was last changed: the kernel's "updated".
	Age time.Duration
}

// FDBStats is a snapshot of an FDB's counters.
type FDBStats struct {
	// Learned counts entries created by Learn.
	Learned uint64
	// Moved counts learned entries that Learn moved to another remote.
	Moved uint64
	// RejectedFull counts unknown sources Learn could not add because the
	// table was at MaxEntries.
	RejectedFull uint64
	// Expired counts learned entries removed by ageing.
	Expired uint64
}

// FDB is a VXLAN forwarding database: it maps inner destination MAC
// addresses to the remote VTEPs a frame is sent to, learns that mapping from
// received frames and ages learned entries out. Create it with NewFDB; the
// zero value is an empty FDB with no limit and no ageing. All methods are
// safe for concurrent use.
//
// Lookup and Learn, which run for every packet, take no lock and do not
// allocate unless Learn changes the table. Changes are made under a mutex
// and publish new, immutable remote lists (copy-on-write), so a slice
// returned by Lookup stays valid and unchanged after later changes.
//
// The FDB does not read the system clock: its coarse clock is advanced by
// Tick, which the device calls from a ticker (the kernel rescans every 10
// seconds, FDB_AGE_INTERVAL) and which also ages entries out.
type FDB struct {
	maxEntries int64
	ageing     int64 // nanoseconds; 0 = no ageing

	// entries maps MAC to *fdbEntry. Readers load from it without a lock;
	// every store and delete happens with mu held. sync.Map (a concurrent
	// hash trie) keeps lookups lock-free and inserts O(log n); an
	// RWMutex'd map measured slower with parallel readers, and a
	// copy-on-write map would make each new entry cost O(n).
	entries sync.Map
	// def is the entry of the all-zeros MAC, kept aside so that a flood
	// costs one map lookup, not two. Stored with mu held.
	def atomic.Pointer[fdbEntry]
	// count is the number of entries. Written with mu held.
	count atomic.Int64
	// clock is the coarse time in nanoseconds since the first Tick.
	// Written with mu held; it never goes backwards.
	clock atomic.Int64

	mu sync.Mutex // serializes every change to the table
	// started and base anchor clock to the first Tick.
	started bool
	base    time.Time
	// nextExpiry is a lower bound of the clock at which a learned entry
	// can expire, so that a Tick before then need not scan the table (the
	// kernel's next_timer). math.MaxInt64 when nothing can expire.
	nextExpiry int64

	learned, moved, rejectedFull, expired atomic.Uint64
}

// fdbEntry is the value stored per MAC. Only updated ever changes: any other
// change replaces the whole entry, so a reader that loaded it sees a
// consistent remote list and kind.
type fdbEntry struct {
	// remotes is never empty and never modified, and has cap == len so a
	// caller that appends to the slice Lookup returned gets a copy.
	remotes []Remote
	static  bool
	// updated is the clock when the entry was created, last changed or
	// (learned entries) last confirmed by Learn.
	updated atomic.Int64
}

func newFDBEntry(remotes []Remote, static bool, now int64) *fdbEntry {
	e := &fdbEntry{remotes: slices.Clip(remotes), static: static}
	e.updated.Store(now)
	return e
}

// NewFDB returns an empty forwarding database.
func NewFDB(cfg FDBConfig) *FDB {
	f := &FDB{nextExpiry: math.MaxInt64}
	if cfg.MaxEntries > 0 {
		f.maxEntries = int64(cfg.MaxEntries)
	}
	if cfg.AgeingTime > 0 {
		f.ageing = int64(cfg.AgeingTime)
	}
	return f
}

// load returns the entry for mac, or nil.
func (f *FDB) load(mac MAC) *fdbEntry {
	v, ok := f.entries.Load(mac)
	if !ok {
		return nil
	}
	return v.(*fdbEntry)
}

// full reports whether a new entry would exceed MaxEntries.
func (f *FDB) full() bool {
	return f.maxEntries > 0 && f.count.Load() >= f.maxEntries
}

// store sets the entry for mac. The caller holds mu and has adjusted count.
func (f *FDB) store(mac MAC, e *fdbEntry) {
	f.entries.Store(mac, e)
	if mac.IsZero() {
		f.def.Store(e)
	}
}

// remove deletes the entry for mac, which exists. The caller holds mu.
func (f *FDB) remove(mac MAC) {
	f.entries.Delete(mac)
	f.count.Add(-1)
	if mac.IsZero() {
		f.def.Store(nil)
	}
}

// Lookup returns the remotes a frame for dst is sent to, as vxlan_xmit
// finds them: dst's own entry if it has one, whether dst is unicast or
// multicast; otherwise the default entry (the all-zeros MAC), which floods
// broadcast, multicast and unknown unicast frames to every remote in it
// (head-end replication). flood reports that the default entry answered, so
// that the device can count flooded and unicast frames apart. Lookup returns
// nil when there is neither, and the device drops the frame.
//
// The returned slice belongs to the FDB and must not be modified; it is an
// immutable snapshot that later changes do not affect. Lookup never
// allocates. Unlike the kernel it does not record when an entry was used:
// ageing depends only on Learn.
func (f *FDB) Lookup(dst MAC) (remotes []Remote, flood bool) {
	if e := f.load(dst); e != nil {
		return e.remotes, dst.IsZero()
	}
	if e := f.def.Load(); e != nil {
		return e.remotes, true
	}
	return nil, false
}

// Learn records that a frame with source MAC src arrived from the remote
// from, as vxlan_snoop does for every received frame on a device with
// learning on:
//
//   - a multicast or all-zeros src is never learned (LearnIgnored);
//   - an entry that already points at from.Addr is refreshed: a learned
//     entry's ageing restarts (LearnRefreshed), a static one is left alone
//     (LearnStatic);
//   - a static entry that points elsewhere is never moved
//     (LearnStaticConflict);
//   - a learned entry that points elsewhere is moved to from (LearnMoved);
//   - an unknown src is added unless the table is at MaxEntries
//     (LearnAdded, LearnRejectedFull).
//
// Like the kernel, Learn identifies the sender by its address alone: the
// outer UDP source port is a per-flow hash (RFC 7348 §5), not an identity.
// from's Port and VNI are stored as given when an entry is created or
// moved; a device normally passes zero for both, meaning its own, as the
// kernel stores its dst_port and VNI.
//
// The refresh, the common case, takes no lock, writes memory only when the
// coarse clock has advanced, and never allocates; so are the ignored,
// static and (when the table is visibly full) rejected cases.
func (f *FDB) Learn(src MAC, from Remote) LearnResult {
	if src.IsMulticast() || src.IsZero() ||
		!from.Addr.IsValid() || from.Addr.IsUnspecified() || !from.VNI.Valid() {
		return LearnIgnored
	}
	from.Addr = from.Addr.Unmap()
	if e := f.load(src); e != nil {
		if r, ok := f.confirm(e, from.Addr); ok {
			return r
		}
	} else if f.full() {
		f.rejectedFull.Add(1)
		return LearnRejectedFull
	}
	return f.learnLocked(src, from)
}

// confirm handles the cases of Learn that change nothing but e's update
// time. ok is false when src must be added or moved.
func (f *FDB) confirm(e *fdbEntry, addr netip.Addr) (r LearnResult, ok bool) {
	switch {
	case e.remotes[0].Addr == addr && e.static:
		return LearnStatic, true
	case e.remotes[0].Addr == addr:
		// Store only when the clock moved, as the kernel does, so that
		// a busy entry's cache line is written once per tick, not once
		// per packet.
		if now := f.clock.Load(); e.updated.Load() != now {
			e.updated.Store(now)
		}
		return LearnRefreshed, true
	case e.static:
		return LearnStaticConflict, true
	}
	return 0, false
}

// learnLocked is Learn's slow path: it adds or moves src under the lock,
// after looking again, since another writer may have changed the entry.
func (f *FDB) learnLocked(src MAC, from Remote) LearnResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.load(src)
	if e != nil {
		if r, ok := f.confirm(e, from.Addr); ok {
			return r
		}
	} else if f.full() {
		f.rejectedFull.Add(1)
		return LearnRejectedFull
	}
	now := f.clock.Load()
	f.store(src, newFDBEntry([]Remote{from}, false, now))
	if f.ageing > 0 {
		f.nextExpiry = min(f.nextExpiry, now+f.ageing)
	}
	if e != nil {
		f.moved.Add(1)
		return LearnMoved
	}
	f.count.Add(1)
	f.learned.Add(1)
	return LearnAdded
}

// checkRemote validates r for Add and Append and returns it normalized.
func checkRemote(r Remote) (Remote, error) {
	switch {
	case !r.Addr.IsValid():
		return r, fmt.Errorf("%w: no address", ErrFDBInvalidRemote)
	case r.Addr.IsUnspecified():
		// The kernel accepts 0.0.0.0 but vxlan_xmit_one drops what is
		// sent there; refuse it rather than make a silent black hole.
		return r, fmt.Errorf("%w: unspecified address %v", ErrFDBInvalidRemote, r.Addr)
	case !r.VNI.Valid():
		return r, fmt.Errorf("%w: VNI %v exceeds %d", ErrFDBInvalidRemote, r.VNI, MaxVNI)
	}
	r.Addr = r.Addr.Unmap()
	return r, nil
}

// Add makes mac a static entry with the single remote r, creating it or
// replacing whatever entry mac had: a learned entry becomes static, and the
// default or a multicast entry loses its other remotes. Static entries never
// age and learning never moves them. It is "bridge fdb replace" (the kernel
// answers "bridge fdb add" for an existing entry with EEXIST; a replacing Add
// is easier to use idempotently).
//
// Add fails with ErrFDBInvalidRemote if r has no address, an unspecified
// one or a VNI above MaxVNI (a multicast group is allowed), and with
// ErrFDBFull if mac is new and the table is at MaxEntries.
func (f *FDB) Add(mac MAC, r Remote) error {
	r, err := checkRemote(r)
	if err != nil {
		return fmt.Errorf("vxlan: fdb add %v: %w", mac, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.load(mac) == nil {
		if f.full() {
			return fmt.Errorf("vxlan: fdb add %v: %w (MaxEntries %d)", mac, ErrFDBFull, f.maxEntries)
		}
		f.count.Add(1)
	}
	f.store(mac, newFDBEntry([]Remote{r}, true, f.clock.Load()))
	return nil
}

// Append adds the remote r to mac's static entry, creating the entry if
// there is none: "bridge fdb append". It is how the default entry (the
// all-zeros MAC) and multicast entries get several remotes, each of which
// receives a copy of every frame they forward (head-end replication).
// Appending a remote the entry already has changes nothing.
//
// A unicast MAC has one remote: appending a different one fails with
// ErrFDBUnicastAppend (the kernel ignores such an append silently).
// Appending to a learned entry makes it static, as in the kernel. Append
// fails like Add on an invalid remote or a full table.
func (f *FDB) Append(mac MAC, r Remote) error {
	r, err := checkRemote(r)
	if err != nil {
		return fmt.Errorf("vxlan: fdb append %v: %w", mac, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.load(mac)
	switch {
	case e == nil:
		if f.full() {
			return fmt.Errorf("vxlan: fdb append %v: %w (MaxEntries %d)", mac, ErrFDBFull, f.maxEntries)
		}
		f.count.Add(1)
		f.store(mac, newFDBEntry([]Remote{r}, true, f.clock.Load()))
	case slices.Contains(e.remotes, r):
		if !e.static {
			f.store(mac, newFDBEntry(e.remotes, true, f.clock.Load()))
		}
	case !mac.IsMulticast() && !mac.IsZero():
		return fmt.Errorf("vxlan: fdb append %v dst %v: %w (it has dst %v)", mac, r.Addr, ErrFDBUnicastAppend, e.remotes[0].Addr)
	default:
		remotes := make([]Remote, 0, len(e.remotes)+1)
		remotes = append(append(remotes, e.remotes...), r)
		f.store(mac, newFDBEntry(remotes, true, f.clock.Load()))
	}
	return nil
}

// Delete removes mac's entry, static or learned, with all its remotes
// ("bridge fdb del"). It fails with ErrFDBNotFound if there is none.
func (f *FDB) Delete(mac MAC) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.load(mac) == nil {
		return fmt.Errorf("vxlan: fdb del %v: %w", mac, ErrFDBNotFound)
	}
	f.remove(mac)
	return nil
}

// DeleteRemote removes the remote r, compared field by field, from mac's
// entry, and the entry itself when r was its only remote ("bridge fdb del
// ... dst"). It fails with ErrFDBNotFound if mac has no entry or the entry
// does not have r (where the kernel returns success).
func (f *FDB) DeleteRemote(mac MAC, r Remote) error {
	r.Addr = r.Addr.Unmap()
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.load(mac)
	if e == nil {
		return fmt.Errorf("vxlan: fdb del %v: %w", mac, ErrFDBNotFound)
	}
	i := slices.Index(e.remotes, r)
	switch {
	case i < 0:
		return fmt.Errorf("vxlan: fdb del %v dst %v: %w", mac, r.Addr, ErrFDBNotFound)
	case len(e.remotes) == 1:
		f.remove(mac)
	default:
		remotes := slices.Delete(slices.Clone(e.remotes), i, i+1)
		ne := newFDBEntry(remotes, e.static, f.clock.Load())
		f.store(mac, ne)
	}
	return nil
}

// Flush removes the learned entries and, unless learnedOnly, the static
// ones too, and returns how many it removed. Like the kernel's vxlan_flush,
// it never removes the default entry, which stands for the device's
// configured remote or group; Delete removes it.
func (f *FDB) Flush(learnedOnly bool) (removed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries.Range(func(k, v any) bool {
		mac, e := k.(MAC), v.(*fdbEntry)
		if mac.IsZero() || (learnedOnly && e.static) {
			return true
		}
		f.remove(mac)
		removed++
		return true
	})
	return removed
}

// Tick advances the FDB's coarse clock to now and removes the learned
// entries not confirmed by Learn for AgeingTime or longer, as the kernel's
// vxlan_cleanup does; static entries and the default entry never age. It
// returns the number of entries removed.
//
// The clock starts at the first Tick and never goes backwards: a now
// earlier than a previous one only runs the ageing scan. Pass times from
// one clock, such as those of a time.Ticker; tests may fabricate them. A
// Tick that cannot expire anything returns without scanning the table.
func (f *FDB) Tick(now time.Time) (expired int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.started {
		f.started, f.base = true, now
	}
	clock := f.clock.Load()
	if c := int64(now.Sub(f.base)); c > clock {
		clock = c
		f.clock.Store(clock)
	}
	if f.ageing == 0 || clock < f.nextExpiry {
		return 0
	}
	next := int64(math.MaxInt64)
	f.entries.Range(func(k, v any) bool {
		e := v.(*fdbEntry)
		if e.static {
			return true
		}
		// A Learn that refreshes e between this load and the delete
		// is lost and the next frame learns the MAC again; the kernel
		// has the same window.
		if deadline := e.updated.Load() + f.ageing; deadline <= clock {
			f.remove(k.(MAC))
			expired++
		} else {
			next = min(next, deadline)
		}
		return true
	})
	f.nextExpiry = next
	f.expired.Add(uint64(expired))
	return expired
}

// Entries returns a consistent snapshot of every entry, sorted by MAC
// address, for listing. It holds off changes while it copies the table.
func (f *FDB) Entries() []Entry {
	f.mu.Lock()
	clock := f.clock.Load()
	out := make([]Entry, 0, f.count.Load())
	f.entries.Range(func(k, v any) bool {
		e := v.(*fdbEntry)
		out = append(out, Entry{
			MAC:     k.(MAC),
			Remotes: slices.Clone(e.remotes),
			Static:  e.static,
			Age:     time.Duration(max(0, clock-e.updated.Load())),
		})
		return true
	})
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b Entry) int { return bytes.Compare(a.MAC[:], b.MAC[:]) })
	return out
}

// HasRemote reports whether any entry sends to addr. It reads the table
// without copying it (for the rare ICMP error, not per packet).
func (f *FDB) HasRemote(addr netip.Addr) bool {
	addr = addr.Unmap()
	found := false
	f.entries.Range(func(_, v any) bool {
		for _, r := range v.(*fdbEntry).remotes {
			if r.Addr == addr {
				found = true
				return false
			}
		}
		return true
	})
	return found
}

// Len returns the number of entries, the kernel's addrcnt.
func (f *FDB) Len() int {
	return int(f.count.Load())
}

// Stats returns a snapshot of the FDB's counters.
func (f *FDB) Stats() FDBStats {
	return FDBStats{
		Learned:      f.learned.Load(),
		Moved:        f.moved.Load(),
		RejectedFull: f.rejectedFull.Load(),
		Expired:      f.expired.Load(),
	}
}
