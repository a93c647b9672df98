package vxlan

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Addresses used throughout: hosts behind remote VTEPs, and the VTEPs.
var (
	macA      = MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB      = MAC{0x02, 0, 0, 0, 0, 0x0b}
	macC      = MAC{0x02, 0, 0, 0, 0, 0x0c}
	macZero   = MAC{}
	macBcast  = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macMcast  = MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb} // 224.0.0.251 (mDNS)
	macMcast6 = MAC{0x33, 0x33, 0x00, 0x00, 0x00, 0x01} // ff02::1

	vtep1  = Remote{Addr: netip.MustParseAddr("192.0.2.1")}
	vtep2  = Remote{Addr: netip.MustParseAddr("192.0.2.2")}
	vtep3  = Remote{Addr: netip.MustParseAddr("192.0.2.3")}
	vtep6  = Remote{Addr: netip.MustParseAddr("2001:db8::6")}
	group  = Remote{Addr: netip.MustParseAddr("239.1.1.1")}
	mapped = Remote{Addr: netip.MustParseAddr("::ffff:192.0.2.1")} // vtep1, as a dual-stack socket reports it
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// cmpOpts compares netip.Addr by value (it has unexported fields) and an
// empty listing with a nil one.
var cmpOpts = cmp.Options{cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()}

// mustDo fails the test if any of errs is not nil: for setup steps.
func mustDo(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
}

func TestMAC(t *testing.T) {
	tests := []struct {
		in      string
		want    MAC
		wantErr bool
		str     string
		mcast   bool
		zero    bool
	}{
		{in: "02:00:00:00:00:0a", want: macA, str: "02:00:00:00:00:0a"},
		{in: "02-00-00-00-00-0A", want: macA, str: "02:00:00:00:00:0a"},
		{in: "0200.0000.000a", want: macA, str: "02:00:00:00:00:0a"},
		{in: "ff:ff:ff:ff:ff:ff", want: macBcast, str: "ff:ff:ff:ff:ff:ff", mcast: true},
		{in: "01:00:5e:00:00:fb", want: macMcast, str: "01:00:5e:00:00:fb", mcast: true},
		{in: "33:33:00:00:00:01", want: macMcast6, str: "33:33:00:00:00:01", mcast: true},
		{in: "00:00:00:00:00:00", want: macZero, str: "00:00:00:00:00:00", zero: true},
		// The 64-bit form net.ParseMAC accepts is not an Ethernet address.
		{in: "02:00:00:00:00:00:00:0a", wantErr: true},
		{in: "02:00:00:00:00", wantErr: true},
		{in: "not a mac", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMAC(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseMAC(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got != tt.want {
				t.Errorf("ParseMAC(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			if got.IsMulticast() != tt.mcast {
				t.Errorf("IsMulticast() = %v, want %v", got.IsMulticast(), tt.mcast)
			}
			if got.IsZero() != tt.zero {
				t.Errorf("IsZero() = %v, want %v", got.IsZero(), tt.zero)
			}
		})
	}
}

func TestFDBLearn(t *testing.T) {
	tests := []struct {
		name  string
		cfg   FDBConfig
		setup func(t *testing.T, f *FDB)
		src   MAC
		from  Remote
		want  LearnResult
		// wantEntries is the whole table afterwards.
		wantEntries []Entry
		wantStats   FDBStats
	}{{
		name:        "new source is added",
		src:         macA,
		from:        vtep1,
		want:        LearnAdded,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}}},
		wantStats:   FDBStats{Learned: 1},
	}, {
		name:        "known source from the same remote is refreshed",
		setup:       func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) },
		src:         macA,
		from:        vtep1,
		want:        LearnRefreshed,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}}},
		wantStats:   FDBStats{Learned: 1},
	}, {
		name:  "same address with another source port and VNI is the same remote",
		setup: func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) },
		src:   macA,
		from:  Remote{Addr: vtep1.Addr, Port: 51234, VNI: 7},
		want:  LearnRefreshed,
		// The stored remote keeps the Port and VNI it was learned with.
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}}},
		wantStats:   FDBStats{Learned: 1},
	}, {
		name:        "IPv4-mapped sender matches the IPv4 entry",
		setup:       func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) },
		src:         macA,
		from:        mapped,
		want:        LearnRefreshed,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}}},
		wantStats:   FDBStats{Learned: 1},
	}, {
		name:        "learned source from another remote moves",
		setup:       func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) },
		src:         macA,
		from:        vtep6,
		want:        LearnMoved,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep6}}},
		wantStats:   FDBStats{Learned: 1, Moved: 1},
	}, {
		name:        "static entry from its own remote is left alone",
		setup:       func(t *testing.T, f *FDB) { mustDo(t, f.Add(macA, vtep1)) },
		src:         macA,
		from:        vtep1,
		want:        LearnStatic,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name:        "static entry is never moved",
		setup:       func(t *testing.T, f *FDB) { mustDo(t, f.Add(macA, vtep1)) },
		src:         macA,
		from:        vtep2,
		want:        LearnStaticConflict,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name:  "entry made static by Add after learning is not moved",
		setup: func(t *testing.T, f *FDB) { f.Learn(macA, vtep2); mustDo(t, f.Add(macA, vtep1)) },
		src:   macA,
		from:  vtep2,
		want:  LearnStaticConflict,
		wantEntries: []Entry{
			{MAC: macA, Remotes: []Remote{vtep1}, Static: true},
		},
		wantStats: FDBStats{Learned: 1},
	}, {
		name: "broadcast source is ignored",
		src:  macBcast,
		from: vtep1,
		want: LearnIgnored,
	}, {
		name: "multicast source is ignored",
		src:  macMcast,
		from: vtep1,
		want: LearnIgnored,
	}, {
		name: "all-zeros source is ignored",
		src:  macZero,
		from: vtep1,
		want: LearnIgnored,
	}, {
		name: "sender without address is ignored",
		src:  macA,
		from: Remote{},
		want: LearnIgnored,
	}, {
		name: "unspecified sender is ignored",
		src:  macA,
		from: Remote{Addr: netip.IPv4Unspecified()},
		want: LearnIgnored,
	}, {
		name: "sender with an out-of-range VNI is ignored",
		src:  macA,
		from: Remote{Addr: vtep1.Addr, VNI: MaxVNI + 1},
		want: LearnIgnored,
	}, {
		name: "full table rejects a new source and stays unchanged",
		cfg:  FDBConfig{MaxEntries: 2},
		setup: func(t *testing.T, f *FDB) {
			f.Learn(macA, vtep1)
			mustDo(t, f.Add(macB, vtep2))
		},
		src:  macC,
		from: vtep3,
		want: LearnRejectedFull,
		wantEntries: []Entry{
			{MAC: macA, Remotes: []Remote{vtep1}},
			{MAC: macB, Remotes: []Remote{vtep2}, Static: true},
		},
		wantStats: FDBStats{Learned: 1, RejectedFull: 1},
	}, {
		name: "default entry counts towards MaxEntries",
		cfg:  FDBConfig{MaxEntries: 1},
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macZero, vtep1))
		},
		src:         macA,
		from:        vtep1,
		want:        LearnRejectedFull,
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep1}, Static: true}},
		wantStats:   FDBStats{RejectedFull: 1},
	}, {
		name: "full table still moves a known source",
		cfg:  FDBConfig{MaxEntries: 2},
		setup: func(t *testing.T, f *FDB) {
			f.Learn(macA, vtep1)
			f.Learn(macB, vtep2)
		},
		src:  macA,
		from: vtep3,
		want: LearnMoved,
		wantEntries: []Entry{
			{MAC: macA, Remotes: []Remote{vtep3}},
			{MAC: macB, Remotes: []Remote{vtep2}},
		},
		wantStats: FDBStats{Learned: 2, Moved: 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFDB(tt.cfg)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			if got := f.Learn(tt.src, tt.from); got != tt.want {
				t.Errorf("Learn(%v, %v) = %v, want %v", tt.src, tt.from.Addr, got, tt.want)
			}
			if diff := cmp.Diff(tt.wantEntries, f.Entries(), cmpOpts); diff != "" {
				t.Errorf("Entries() mismatch (-want +got):\n%s", diff)
			}
			if got := f.Len(); got != len(tt.wantEntries) {
				t.Errorf("Len() = %d, want %d", got, len(tt.wantEntries))
			}
			if diff := cmp.Diff(tt.wantStats, f.Stats()); diff != "" {
				t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFDBStaticEntries(t *testing.T) {
	withPort := Remote{Addr: vtep2.Addr, Port: 8472}
	withVNI := Remote{Addr: vtep2.Addr, VNI: 42}
	tests := []struct {
		name        string
		cfg         FDBConfig
		setup       func(t *testing.T, f *FDB)
		op          func(f *FDB) error
		wantErr     error
		wantEntries []Entry
	}{{
		name:        "add creates a static entry",
		op:          func(f *FDB) error { return f.Add(macA, vtep1) },
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name:        "add replaces the remote of a static entry",
		setup:       func(t *testing.T, f *FDB) { mustDo(t, f.Add(macA, vtep1)) },
		op:          func(f *FDB) error { return f.Add(macA, withPort) },
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{withPort}, Static: true}},
	}, {
		name:        "add makes a learned entry static",
		setup:       func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) },
		op:          func(f *FDB) error { return f.Add(macA, vtep2) },
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep2}, Static: true}},
	}, {
		name:        "add stores an IPv4-mapped address as IPv4",
		op:          func(f *FDB) error { return f.Add(macA, mapped) },
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name:        "add accepts a multicast group",
		op:          func(f *FDB) error { return f.Add(macMcast, group) },
		wantEntries: []Entry{{MAC: macMcast, Remotes: []Remote{group}, Static: true}},
	}, {
		name:        "add accepts an IPv6 remote with port and VNI",
		op:          func(f *FDB) error { return f.Add(macA, Remote{Addr: vtep6.Addr, Port: 4790, VNI: MaxVNI}) },
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{{Addr: vtep6.Addr, Port: 4790, VNI: MaxVNI}}, Static: true}},
	}, {
		name: "add on the default entry leaves it one remote",
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macZero, vtep1), f.Append(macZero, vtep2))
		},
		op:          func(f *FDB) error { return f.Add(macZero, vtep3) },
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep3}, Static: true}},
	}, {
		name:    "add rejects a remote without address",
		op:      func(f *FDB) error { return f.Add(macA, Remote{Port: 4789}) },
		wantErr: ErrFDBInvalidRemote,
	}, {
		name:    "add rejects an unspecified IPv4 remote",
		op:      func(f *FDB) error { return f.Add(macA, Remote{Addr: netip.IPv4Unspecified()}) },
		wantErr: ErrFDBInvalidRemote,
	}, {
		name:    "add rejects an unspecified IPv6 remote",
		op:      func(f *FDB) error { return f.Add(macA, Remote{Addr: netip.IPv6Unspecified()}) },
		wantErr: ErrFDBInvalidRemote,
	}, {
		name:    "add rejects a VNI wider than 24 bits",
		op:      func(f *FDB) error { return f.Add(macA, Remote{Addr: vtep1.Addr, VNI: MaxVNI + 1}) },
		wantErr: ErrFDBInvalidRemote,
	}, {
		name:    "append rejects an invalid remote",
		op:      func(f *FDB) error { return f.Append(macZero, Remote{}) },
		wantErr: ErrFDBInvalidRemote,
	}, {
		name: "add of a new MAC to a full table fails and changes nothing",
		cfg:  FDBConfig{MaxEntries: 2},
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Add(macA, vtep1))
			f.Learn(macB, vtep2)
		},
		op:      func(f *FDB) error { return f.Add(macC, vtep3) },
		wantErr: ErrFDBFull,
		wantEntries: []Entry{
			{MAC: macA, Remotes: []Remote{vtep1}, Static: true},
			{MAC: macB, Remotes: []Remote{vtep2}},
		},
	}, {
		name: "append of a new MAC to a full table fails and changes nothing",
		cfg:  FDBConfig{MaxEntries: 1},
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Add(macA, vtep1))
		},
		op:          func(f *FDB) error { return f.Append(macZero, vtep3) },
		wantErr:     ErrFDBFull,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name: "add replacing an entry of a full table succeeds",
		cfg:  FDBConfig{MaxEntries: 1},
		setup: func(t *testing.T, f *FDB) {
			f.Learn(macA, vtep1)
		},
		op:          func(f *FDB) error { return f.Add(macA, vtep2) },
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep2}, Static: true}},
	}, {
		name: "append to an entry of a full table succeeds",
		cfg:  FDBConfig{MaxEntries: 1},
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macZero, vtep1))
		},
		op:          func(f *FDB) error { return f.Append(macZero, vtep2) },
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep1, vtep2}, Static: true}},
	}, {
		name:        "append creates an entry",
		op:          func(f *FDB) error { return f.Append(macZero, vtep1) },
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name:        "append builds the flood list in order",
		setup:       func(t *testing.T, f *FDB) { mustDo(t, f.Append(macZero, vtep2)) },
		op:          func(f *FDB) error { return f.Append(macZero, vtep1) },
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep2, vtep1}, Static: true}},
	}, {
		name:  "append of a remote that differs only in port or VNI adds it",
		setup: func(t *testing.T, f *FDB) { mustDo(t, f.Append(macZero, vtep2), f.Append(macZero, withPort)) },
		op:    func(f *FDB) error { return f.Append(macZero, withVNI) },
		wantEntries: []Entry{
			{MAC: macZero, Remotes: []Remote{vtep2, withPort, withVNI}, Static: true},
		},
	}, {
		name: "append of a remote already present changes nothing",
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macZero, vtep1), f.Append(macZero, vtep2))
		},
		op:          func(f *FDB) error { return f.Append(macZero, mapped) },
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep1, vtep2}, Static: true}},
	}, {
		name: "append to a multicast MAC replicates",
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macMcast6, vtep1))
		},
		op:          func(f *FDB) error { return f.Append(macMcast6, vtep6) },
		wantEntries: []Entry{{MAC: macMcast6, Remotes: []Remote{vtep1, vtep6}, Static: true}},
	}, {
		name:        "append of a second remote to a unicast MAC fails",
		setup:       func(t *testing.T, f *FDB) { mustDo(t, f.Add(macA, vtep1)) },
		op:          func(f *FDB) error { return f.Append(macA, vtep2) },
		wantErr:     ErrFDBUnicastAppend,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name:        "append of its own remote makes a learned entry static",
		setup:       func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) },
		op:          func(f *FDB) error { return f.Append(macA, vtep1) },
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name: "delete removes a static entry",
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Add(macA, vtep1), f.Add(macB, vtep2))
		},
		op:          func(f *FDB) error { return f.Delete(macA) },
		wantEntries: []Entry{{MAC: macB, Remotes: []Remote{vtep2}, Static: true}},
	}, {
		name:  "delete removes a learned entry",
		setup: func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) },
		op:    func(f *FDB) error { return f.Delete(macA) },
	}, {
		name: "delete removes the default entry with all its remotes",
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macZero, vtep1), f.Append(macZero, vtep2))
		},
		op: func(f *FDB) error { return f.Delete(macZero) },
	}, {
		name:        "delete of an unknown MAC fails",
		setup:       func(t *testing.T, f *FDB) { mustDo(t, f.Add(macA, vtep1)) },
		op:          func(f *FDB) error { return f.Delete(macB) },
		wantErr:     ErrFDBNotFound,
		wantEntries: []Entry{{MAC: macA, Remotes: []Remote{vtep1}, Static: true}},
	}, {
		name: "delete remote removes one of the flood list",
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macZero, vtep1), f.Append(macZero, vtep2), f.Append(macZero, vtep3))
		},
		op:          func(f *FDB) error { return f.DeleteRemote(macZero, vtep2) },
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep1, vtep3}, Static: true}},
	}, {
		name:  "delete of the last remote removes the entry",
		setup: func(t *testing.T, f *FDB) { mustDo(t, f.Append(macZero, vtep1)) },
		op:    func(f *FDB) error { return f.DeleteRemote(macZero, mapped) },
	}, {
		name: "delete remote compares port and VNI",
		setup: func(t *testing.T, f *FDB) {
			mustDo(t, f.Append(macZero, vtep2), f.Append(macZero, withVNI))
		},
		op:          func(f *FDB) error { return f.DeleteRemote(macZero, withPort) },
		wantErr:     ErrFDBNotFound,
		wantEntries: []Entry{{MAC: macZero, Remotes: []Remote{vtep2, withVNI}, Static: true}},
	}, {
		name:    "delete remote of an unknown MAC fails",
		op:      func(f *FDB) error { return f.DeleteRemote(macA, vtep1) },
		wantErr: ErrFDBNotFound,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFDB(tt.cfg)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			err := tt.op(f)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantEntries, f.Entries(), cmpOpts); diff != "" {
				t.Errorf("Entries() mismatch (-want +got):\n%s", diff)
			}
			if got := f.Len(); got != len(tt.wantEntries) {
				t.Errorf("Len() = %d, want %d", got, len(tt.wantEntries))
			}
		})
	}
}

// TestFDBErrorText checks that errors name the entry and remote concerned.
func TestFDBErrorText(t *testing.T) {
	f := NewFDB(FDBConfig{MaxEntries: 1})
	mustDo(t, f.Add(macA, vtep1))
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"full", f.Add(macB, vtep2), "vxlan: fdb add 02:00:00:00:00:0b: forwarding database full (MaxEntries 1)"},
		{"invalid", f.Add(macA, Remote{Addr: netip.IPv6Unspecified()}), "vxlan: fdb add 02:00:00:00:00:0a: invalid remote: unspecified address ::"},
		{"not found", f.DeleteRemote(macA, vtep2), "vxlan: fdb del 02:00:00:00:00:0a dst 192.0.2.2: forwarding database entry not found"},
		{"unicast append", f.Append(macA, vtep2), "vxlan: fdb append 02:00:00:00:00:0a dst 192.0.2.2: cannot append a second remote to a unicast entry (it has dst 192.0.2.1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || tt.err.Error() != tt.want {
				t.Errorf("error = %v, want %q", tt.err, tt.want)
			}
		})
	}
}

func TestFDBLookup(t *testing.T) {
	withDefault := func(t *testing.T, f *FDB) {
		mustDo(t,
			f.Append(macZero, vtep1), f.Append(macZero, vtep2), // head-end replication
			f.Add(macB, vtep3),
			f.Append(macMcast, group),
		)
		f.Learn(macA, vtep6)
	}
	tests := []struct {
		name      string
		setup     func(t *testing.T, f *FDB)
		dst       MAC
		want      []Remote
		wantFlood bool
	}{
		{name: "learned unicast", setup: withDefault, dst: macA, want: []Remote{vtep6}},
		{name: "static unicast", setup: withDefault, dst: macB, want: []Remote{vtep3}},
		{name: "unknown unicast floods", setup: withDefault, dst: macC, want: []Remote{vtep1, vtep2}, wantFlood: true},
		{name: "broadcast floods", setup: withDefault, dst: macBcast, want: []Remote{vtep1, vtep2}, wantFlood: true},
		{name: "multicast without entry floods", setup: withDefault, dst: macMcast6, want: []Remote{vtep1, vtep2}, wantFlood: true},
		{name: "multicast with its own entry", setup: withDefault, dst: macMcast, want: []Remote{group}},
		{name: "all-zeros destination is a flood", setup: withDefault, dst: macZero, want: []Remote{vtep1, vtep2}, wantFlood: true},
		{name: "empty table", dst: macA},
		{name: "unknown unicast without default", setup: func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) }, dst: macC},
		{name: "broadcast without default", setup: func(t *testing.T, f *FDB) { f.Learn(macA, vtep1) }, dst: macBcast},
		{
			name: "default deleted",
			setup: func(t *testing.T, f *FDB) {
				withDefault(t, f)
				mustDo(t, f.Delete(macZero))
			},
			dst: macC,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFDB(FDBConfig{})
			if tt.setup != nil {
				tt.setup(t, f)
			}
			got, flood := f.Lookup(tt.dst)
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("Lookup(%v) remotes mismatch (-want +got):\n%s", tt.dst, diff)
			}
			if tt.want == nil && got != nil {
				t.Errorf("Lookup(%v) = %#v, want nil", tt.dst, got)
			}
			if flood != tt.wantFlood {
				t.Errorf("Lookup(%v) flood = %v, want %v", tt.dst, flood, tt.wantFlood)
			}
		})
	}
}

// TestFDBLookupSnapshot checks that a slice returned by Lookup is not
// changed by later changes to the entry, nor by the caller appending to it.
func TestFDBLookupSnapshot(t *testing.T) {
	f := NewFDB(FDBConfig{})
	mustDo(t, f.Append(macZero, vtep1), f.Append(macZero, vtep2))
	before, _ := f.Lookup(macBcast)
	want := slices.Clone(before)

	mustDo(t, f.Append(macZero, vtep3), f.DeleteRemote(macZero, vtep1))
	if diff := cmp.Diff(want, before, cmpOpts); diff != "" {
		t.Errorf("earlier Lookup result changed (-want +got):\n%s", diff)
	}
	after, _ := f.Lookup(macBcast)
	if diff := cmp.Diff([]Remote{vtep2, vtep3}, after, cmpOpts); diff != "" {
		t.Errorf("Lookup after change mismatch (-want +got):\n%s", diff)
	}

	// A caller that appends must not write into the FDB's array.
	if len(after) != cap(after) {
		t.Errorf("Lookup result has len %d, cap %d: an append would write into the FDB", len(after), cap(after))
	}
	_ = append(after, vtep6)
	again, _ := f.Lookup(macBcast)
	if diff := cmp.Diff([]Remote{vtep2, vtep3}, again, cmpOpts); diff != "" {
		t.Errorf("append to a Lookup result changed the FDB (-want +got):\n%s", diff)
	}

	// Nor may one that edits an Entries listing.
	entries := f.Entries()
	entries[0].Remotes[0] = vtep6
	again, _ = f.Lookup(macBcast)
	if diff := cmp.Diff([]Remote{vtep2, vtep3}, again, cmpOpts); diff != "" {
		t.Errorf("editing Entries() changed the FDB (-want +got):\n%s", diff)
	}
}

func TestFDBAgeing(t *testing.T) {
	const ageing = 300 * time.Second
	// Each step ticks the clock to t0+at after doing its learns.
	type step struct {
		at          time.Duration
		learn       []MAC // from vtep1
		wantExpired int
		wantEntries []Entry
	}
	static := Entry{MAC: macC, Remotes: []Remote{vtep3}, Static: true}
	flood := Entry{MAC: macZero, Remotes: []Remote{vtep1, vtep2}, Static: true}
	tests := []struct {
		name  string
		cfg   FDBConfig
		steps []step
	}{{
		name: "learned entries age, refreshed ones survive, static never",
		cfg:  FDBConfig{AgeingTime: ageing},
		steps: []step{{
			at:    0,
			learn: []MAC{macA, macB},
			wantEntries: []Entry{
				flood,
				{MAC: macA, Remotes: []Remote{vtep1}},
				{MAC: macB, Remotes: []Remote{vtep1}},
				static,
			},
		}, {
			at:    200 * time.Second,
			learn: []MAC{macA}, // confirmed at t0 (the clock has not moved yet)
			wantEntries: []Entry{
				withAge(flood, 200*time.Second),
				{MAC: macA, Remotes: []Remote{vtep1}, Age: 200 * time.Second},
				{MAC: macB, Remotes: []Remote{vtep1}, Age: 200 * time.Second},
				withAge(static, 200*time.Second),
			},
		}, {
			at:    250 * time.Second,
			learn: []MAC{macA}, // now confirmed at t0+200s
			wantEntries: []Entry{
				withAge(flood, 250*time.Second),
				{MAC: macA, Remotes: []Remote{vtep1}, Age: 50 * time.Second},
				{MAC: macB, Remotes: []Remote{vtep1}, Age: 250 * time.Second},
				withAge(static, 250*time.Second),
			},
		}, {
			// B was confirmed last at t0; it expires when its age
			// reaches the ageing time exactly (time_before_eq).
			at:          300 * time.Second,
			wantExpired: 1,
			wantEntries: []Entry{
				withAge(flood, 300*time.Second),
				{MAC: macA, Remotes: []Remote{vtep1}, Age: 100 * time.Second},
				withAge(static, 300*time.Second),
			},
		}, {
			at: 499 * time.Second,
			wantEntries: []Entry{
				withAge(flood, 499*time.Second),
				{MAC: macA, Remotes: []Remote{vtep1}, Age: 299 * time.Second},
				withAge(static, 499*time.Second),
			},
		}, {
			at:          500 * time.Second,
			wantExpired: 1,
			wantEntries: []Entry{withAge(flood, 500*time.Second), withAge(static, 500*time.Second)},
		}, {
			at:          100 * time.Hour,
			wantEntries: []Entry{withAge(flood, 100*time.Hour), withAge(static, 100*time.Hour)},
		}},
	}, {
		name: "zero ageing time never ages",
		cfg:  FDBConfig{},
		steps: []step{{
			at:    0,
			learn: []MAC{macA},
			wantEntries: []Entry{
				flood,
				{MAC: macA, Remotes: []Remote{vtep1}},
				static,
			},
		}, {
			at: 1000 * time.Hour,
			wantEntries: []Entry{
				withAge(flood, 1000*time.Hour),
				{MAC: macA, Remotes: []Remote{vtep1}, Age: 1000 * time.Hour},
				withAge(static, 1000*time.Hour),
			},
		}},
	}, {
		name: "clock does not go backwards",
		cfg:  FDBConfig{AgeingTime: ageing},
		steps: []step{{
			at:    100 * time.Second,
			learn: []MAC{macA},
			wantEntries: []Entry{
				flood,
				{MAC: macA, Remotes: []Remote{vtep1}},
				static,
			},
		}, {
			// The first Tick anchored the clock at t0+100s.
			at: 200 * time.Second,
			wantEntries: []Entry{
				withAge(flood, 100*time.Second),
				{MAC: macA, Remotes: []Remote{vtep1}, Age: 100 * time.Second},
				withAge(static, 100*time.Second),
			},
		}, {
			at: 0, // a step back: ignored
			wantEntries: []Entry{
				withAge(flood, 100*time.Second),
				{MAC: macA, Remotes: []Remote{vtep1}, Age: 100 * time.Second},
				withAge(static, 100*time.Second),
			},
		}, {
			at:          400 * time.Second,
			wantExpired: 1,
			wantEntries: []Entry{withAge(flood, 300*time.Second), withAge(static, 300*time.Second)},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFDB(tt.cfg)
			mustDo(t, f.Add(macC, vtep3), f.Append(macZero, vtep1), f.Append(macZero, vtep2))
			var wantTotal uint64
			for _, s := range tt.steps {
				for _, m := range s.learn {
					f.Learn(m, vtep1)
				}
				if got := f.Tick(t0.Add(s.at)); got != s.wantExpired {
					t.Errorf("Tick(t0+%v) = %d expired, want %d", s.at, got, s.wantExpired)
				}
				if diff := cmp.Diff(s.wantEntries, f.Entries(), cmpOpts); diff != "" {
					t.Errorf("after Tick(t0+%v): Entries() mismatch (-want +got):\n%s", s.at, diff)
				}
				wantTotal += uint64(s.wantExpired)
			}
			if got := f.Stats().Expired; got != wantTotal {
				t.Errorf("Stats().Expired = %d, want %d", got, wantTotal)
			}
		})
	}

	t.Run("moved entry ages from its move", func(t *testing.T) {
		f := NewFDB(FDBConfig{AgeingTime: ageing})
		f.Tick(t0)
		f.Learn(macA, vtep1)
		f.Tick(t0.Add(299 * time.Second))
		if got := f.Learn(macA, vtep2); got != LearnMoved {
			t.Fatalf("Learn from a new remote = %v, want %v", got, LearnMoved)
		}
		if got := f.Tick(t0.Add(300 * time.Second)); got != 0 {
			t.Errorf("Tick(t0+300s) = %d expired, want 0: the move confirmed the entry", got)
		}
		if got := f.Tick(t0.Add(599 * time.Second)); got != 1 {
			t.Errorf("Tick(t0+599s) = %d expired, want 1", got)
		}
	})
}

// TestFDBNextExpiry checks the bookkeeping that lets a Tick skip the scan of
// the table: nextExpiry must never exceed the earliest deadline of a learned
// entry (or expiry would be late), and a scan resets it to that deadline.
func TestFDBNextExpiry(t *testing.T) {
	const ageing = 300 * time.Second
	f := NewFDB(FDBConfig{AgeingTime: ageing})
	next := func() time.Duration {
		f.mu.Lock()
		defer f.mu.Unlock()
		return time.Duration(f.nextExpiry)
	}
	const never = time.Duration(math.MaxInt64)
	// Each step learns, from the clock of the previous Tick, then ticks.
	steps := []struct {
		at    time.Duration
		learn []MAC
		want  time.Duration
	}{
		{at: 0, want: never}, // nothing learned
		{at: 100 * time.Second, learn: []MAC{macA}, want: 300 * time.Second}, // A learned at 0
		{at: 200 * time.Second, learn: []MAC{macB}, want: 300 * time.Second}, // B, at 100s, does not lower it
		{at: 299 * time.Second, want: 300 * time.Second},                     // not due: no scan
		{at: 300 * time.Second, want: 400 * time.Second},                     // A expired; B is next
		{at: 400 * time.Second, want: never},                                 // B expired
	}
	f.Tick(t0)
	for _, s := range steps {
		for _, m := range s.learn {
			f.Learn(m, vtep1)
		}
		f.Tick(t0.Add(s.at))
		if got := next(); got != s.want {
			t.Errorf("after Tick(t0+%v): nextExpiry = %v, want %v", s.at, got, s.want)
		}
	}
}

func withAge(e Entry, age time.Duration) Entry {
	e.Age = age
	return e
}

func TestFDBFlush(t *testing.T) {
	tests := []struct {
		learnedOnly bool
		wantRemoved int
		want        []Entry
	}{{
		learnedOnly: true,
		wantRemoved: 2,
		want: []Entry{
			{MAC: macZero, Remotes: []Remote{vtep1}, Static: true},
			{MAC: macC, Remotes: []Remote{vtep3}, Static: true},
		},
	}, {
		learnedOnly: false,
		wantRemoved: 3,
		want:        []Entry{{MAC: macZero, Remotes: []Remote{vtep1}, Static: true}},
	}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("learnedOnly=%v", tt.learnedOnly), func(t *testing.T) {
			f := NewFDB(FDBConfig{})
			mustDo(t, f.Append(macZero, vtep1), f.Add(macC, vtep3))
			f.Learn(macA, vtep1)
			f.Learn(macB, vtep2)
			if got := f.Flush(tt.learnedOnly); got != tt.wantRemoved {
				t.Errorf("Flush(%v) = %d, want %d", tt.learnedOnly, got, tt.wantRemoved)
			}
			if diff := cmp.Diff(tt.want, f.Entries(), cmpOpts); diff != "" {
				t.Errorf("Entries() mismatch (-want +got):\n%s", diff)
			}
			if got := f.Len(); got != len(tt.want) {
				t.Errorf("Len() = %d, want %d", got, len(tt.want))
			}
			// The flushed MACs can be learned again.
			if got := f.Learn(macA, vtep2); got != LearnAdded {
				t.Errorf("Learn after Flush = %v, want %v", got, LearnAdded)
			}
		})
	}
}

// TestFDBZeroValue checks that a zero FDB works: no limit, no ageing.
func TestFDBZeroValue(t *testing.T) {
	var f FDB
	if got := f.Learn(macA, vtep1); got != LearnAdded {
		t.Errorf("Learn = %v, want %v", got, LearnAdded)
	}
	f.Tick(t0)
	if got := f.Tick(t0.Add(1000 * time.Hour)); got != 0 {
		t.Errorf("Tick = %d expired, want 0", got)
	}
	if got, _ := f.Lookup(macA); !slices.Equal(got, []Remote{vtep1}) {
		t.Errorf("Lookup = %v, want [%v]", got, vtep1)
	}
}

// TestFDBConcurrent runs every method at once under the race detector and
// then checks the invariants that torn updates would break.
func TestFDBConcurrent(t *testing.T) {
	const (
		maxEntries = 24
		rounds     = 2000
	)
	f := NewFDB(FDBConfig{MaxEntries: maxEntries, AgeingTime: 5 * time.Second})
	mustDo(t, f.Append(macZero, vtep1))

	macs := make([]MAC, 32) // more than MaxEntries, so some are rejected
	for i := range macs {
		macs[i] = MAC{0x02, 0, 0, 0, 1, byte(i)}
	}
	vteps := []Remote{vtep1, vtep2, vtep3, vtep6}
	// The administrator below grows the default entry from [vtep1] to
	// [vtep1 vtep2 vtep3] and shrinks it back, one remote at a time, so
	// every Lookup must see one of those prefixes, never a torn list.
	validFlood := func(rs []Remote) bool {
		all := []Remote{vtep1, vtep2, vtep3}
		return len(rs) >= 1 && slices.Equal(rs, all[:min(len(rs), len(all))])
	}

	var wg sync.WaitGroup
	errc := make(chan error, 16)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	for g := range 2 { // learners, moving MACs between remotes
		wg.Go(func() {
			for i := range rounds {
				f.Learn(macs[(i*7+g)%len(macs)], vteps[(i/5+g)%len(vteps)])
			}
		})
	}
	for range 2 { // transmitters
		wg.Go(func() {
			for i := range rounds {
				rs, flood := f.Lookup(macs[i%len(macs)])
				switch {
				case flood && !validFlood(rs):
					report(fmt.Errorf("flood Lookup = %v, want a prefix of [vtep1 vtep2 vtep3]", rs))
				case !flood && len(rs) != 1:
					report(fmt.Errorf("unicast Lookup = %v, want one remote", rs))
				}
				if rs, flood := f.Lookup(macBcast); !flood || !validFlood(rs) {
					report(fmt.Errorf("broadcast Lookup = %v, %v", rs, flood))
				}
			}
		})
	}
	wg.Go(func() { // the device's ticker
		for i := range rounds {
			f.Tick(t0.Add(time.Duration(i) * 10 * time.Millisecond))
		}
	})
	wg.Go(func() { // an administrator
		for i := range rounds {
			m := macs[i%len(macs)]
			switch i % 6 {
			case 0:
				_ = f.Add(m, vtep3)
			case 1:
				_ = f.Delete(m)
			case 2:
				_ = f.Append(macZero, vtep2)
				_ = f.Append(macZero, vtep3)
			case 3:
				_ = f.DeleteRemote(macZero, vtep3)
				_ = f.DeleteRemote(macZero, vtep2)
			case 4:
				for _, e := range f.Entries() {
					if len(e.Remotes) == 0 {
						report(fmt.Errorf("entry %v has no remotes", e.MAC))
					}
				}
			case 5:
				if i%60 == 5 {
					f.Flush(true)
				}
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}

	entries := f.Entries()
	if got := f.Len(); got != len(entries) {
		t.Errorf("Len() = %d, but Entries() lists %d", got, len(entries))
	}
	if len(entries) > maxEntries {
		t.Errorf("%d entries, more than MaxEntries %d", len(entries), maxEntries)
	}
	if s := f.Stats(); s.Learned == 0 {
		t.Errorf("Stats() = %+v: nothing learned", s)
	}

	// Whatever the interleaving left, a Tick long after the last Learn
	// must expire exactly the learned entries.
	var learned, static []Entry
	for _, e := range entries {
		if e.Static {
			static = append(static, e)
		} else {
			learned = append(learned, e)
		}
	}
	expiredBefore := f.Stats().Expired
	if got := f.Tick(t0.Add(time.Hour)); got != len(learned) {
		t.Errorf("final Tick expired %d entries, want the %d learned ones", got, len(learned))
	}
	if got := f.Stats().Expired - expiredBefore; got != uint64(len(learned)) {
		t.Errorf("Stats().Expired grew by %d, want %d", got, len(learned))
	}
	if diff := cmp.Diff(static, f.Entries(), cmpOpts, cmpopts.IgnoreFields(Entry{}, "Age")); diff != "" {
		t.Errorf("after expiring everything learned, Entries() mismatch (-want +got):\n%s", diff)
	}
}

// populatedFDB returns an FDB with n learned entries and a two-remote
// default entry, and the learned MACs.
func populatedFDB(tb testing.TB, n int, cfg FDBConfig) (*FDB, []MAC) {
	f := NewFDB(cfg)
	if err := errors.Join(f.Append(macZero, vtep1), f.Append(macZero, vtep2)); err != nil {
		tb.Fatal(err)
	}
	macs := make([]MAC, n)
	for i := range macs {
		macs[i] = MAC{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		if r := f.Learn(macs[i], vtep3); r != LearnAdded {
			tb.Fatalf("Learn(%v) = %v", macs[i], r)
		}
	}
	f.Tick(t0)
	return f, macs
}

var sinkRemotes []Remote

func TestLookupNoAllocs(t *testing.T) {
	f, macs := populatedFDB(t, 100, FDBConfig{AgeingTime: DefaultAgeingTime})
	for _, dst := range []MAC{macs[42], macC, macBcast, macMcast} {
		if n := testing.AllocsPerRun(1000, func() { sinkRemotes, _ = f.Lookup(dst) }); n != 0 {
			t.Errorf("Lookup(%v) allocates %v times, want 0", dst, n)
		}
	}
	empty := NewFDB(FDBConfig{})
	if n := testing.AllocsPerRun(1000, func() { sinkRemotes, _ = empty.Lookup(macA) }); n != 0 {
		t.Errorf("Lookup on an empty FDB allocates %v times, want 0", n)
	}
}

func TestLearnRefreshNoAllocs(t *testing.T) {
	// No ageing, so that the Ticks below only advance the clock.
	f, macs := populatedFDB(t, 100, FDBConfig{})
	mustDo(t, f.Add(macA, vtep1))
	clock := t0
	tests := []struct {
		name string
		src  MAC
		from Remote
		want LearnResult
	}{
		{"refresh", macs[42], vtep3, LearnRefreshed},
		{"refresh IPv4-mapped", macs[42], Remote{Addr: netip.AddrFrom16(vtep3.Addr.As16())}, LearnRefreshed},
		{"static", macA, vtep1, LearnStatic},
		{"static conflict", macA, vtep2, LearnStaticConflict},
		{"ignored", macBcast, vtep1, LearnIgnored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got LearnResult
			n := testing.AllocsPerRun(1000, func() {
				clock = clock.Add(time.Second) // so that the refresh writes
				f.Tick(clock)
				got = f.Learn(tt.src, tt.from)
			})
			if got != tt.want {
				t.Fatalf("Learn = %v, want %v", got, tt.want)
			}
			if n != 0 {
				t.Errorf("Learn (%v) allocates %v times, want 0", got, n)
			}
		})
	}

	t.Run("rejected full", func(t *testing.T) {
		// A flood of unknown sources at a full table must stay cheap.
		full := NewFDB(FDBConfig{MaxEntries: 1})
		full.Learn(macA, vtep1)
		var got LearnResult
		n := testing.AllocsPerRun(1000, func() { got = full.Learn(macB, vtep1) })
		if got != LearnRejectedFull || n != 0 {
			t.Errorf("Learn = %v with %v allocations, want %v with 0", got, n, LearnRejectedFull)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	f, macs := populatedFDB(b, 1024, FDBConfig{AgeingTime: DefaultAgeingTime})
	b.Run("unicast", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sinkRemotes, _ = f.Lookup(macs[i&1023])
			i++
		}
	})
	b.Run("flood", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkRemotes, _ = f.Lookup(macBcast)
		}
	})
	b.Run("unicast-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i, n := 0, 0
			for pb.Next() {
				rs, _ := f.Lookup(macs[i&1023])
				n += len(rs)
				i++
			}
			_ = n
		})
	})
}

func BenchmarkLearnRefresh(b *testing.B) {
	f, macs := populatedFDB(b, 1024, FDBConfig{AgeingTime: DefaultAgeingTime})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			f.Learn(macs[i&1023], vtep3)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				f.Learn(macs[i&1023], vtep3)
				i++
			}
		})
	})
}
