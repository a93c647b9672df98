package memlink_test

import (
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestPair runs UDP and a TCP transfer between two stacks joined by a pair,
// in every combination of link mode, delivery mode and IP version.
func TestPair(t *testing.T) {
	const (
		datagrams = 100
		tcpBytes  = 3 << 20
	)
	type testCase struct {
		name  string
		opts  memlink.Options
		proto tcpip.NetworkProtocolNumber
	}
	var tests []testCase
	for _, link := range []struct {
		name     string
		ethernet bool
	}{{"raw", false}, {"ethernet", true}} {
		for _, delivery := range []struct {
			name string
			sync bool
		}{{"sync", true}, {"async", false}} {
			for _, network := range []struct {
				name  string
				proto tcpip.NetworkProtocolNumber
			}{{"ipv4", ipv4.ProtocolNumber}, {"ipv6", ipv6.ProtocolNumber}} {
				tests = append(tests, testCase{
					name:  link.name + "/" + delivery.name + "/" + network.name,
					opts:  memlink.Options{Ethernet: link.ethernet, Sync: delivery.sync},
					proto: network.proto,
				})
			}
		}
	}
	tests = append(tests,
		testCase{
			name:  "ethernet/async/ipv4/checksum-offload",
			opts:  memlink.Options{Ethernet: true, ChecksumOffload: true},
			proto: ipv4.ProtocolNumber,
		},
		testCase{
			name:  "raw/sync/ipv6/checksum-offload",
			opts:  memlink.Options{Sync: true, ChecksumOffload: true},
			proto: ipv6.ProtocolNumber,
		},
		testCase{
			name:  "ethernet/async/ipv6/mtu-65000",
			opts:  memlink.Options{Ethernet: true, MTU: 65000},
			proto: ipv6.ProtocolNumber,
		},
	)

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b, ea, eb := pairedHosts(t, tc.opts)
			ca := udpSocket(t, a, tc.proto, a.addr(tc.proto), 1000)
			cb := udpSocket(t, b, tc.proto, b.addr(tc.proto), 2000)
			toB := udpAddr(b.addr(tc.proto), 2000)

			warmUp(t, ca, toB, cb)
			if tc.opts.Ethernet {
				if got, want := neighbor(a, tc.proto, b.addr(tc.proto)), eb.LinkAddress(); got != want {
					t.Errorf("host 1 resolved %s to %q, want %q", b.addr(tc.proto), got, want)
				}
			}

			sendSeqs(t, ca, toB, 0, datagrams, 512)
			got := seqs(receiveSeqs(cb, datagrams, 5*time.Second))
			want := make([]uint32, datagrams)
			for i := range want {
				want[i] = uint32(i)
			}
			if !slices.Equal(got, want) {
				t.Errorf("received datagrams %v, want %v in order", got, want)
			}

			transferTCP(t, a, b, tc.proto, tcpBytes)

			// Once the wire is quiet, every packet one end sent, the other
			// received, except that an asynchronous receiver may have
			// dropped some in a full queue when the TCP sender outran it
			// (TCP recovers, as over a real link). Nothing else drops.
			arrived := func(tx, rx memlink.Stats) bool {
				return tx.TxPackets == rx.RxPackets+rx.Dropped.QueueFull
			}
			var sa, sb memlink.Stats
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				sa, sb = ea.Stats(), eb.Stats()
				if arrived(sa, sb) && arrived(sb, sa) {
					break
				}
			}
			for _, dir := range []struct {
				name   string
				tx, rx memlink.Stats
			}{{"1->2", sa, sb}, {"2->1", sb, sa}} {
				if !arrived(dir.tx, dir.rx) {
					t.Errorf("%s: sent %d packets, received %d and dropped %d in a full queue",
						dir.name, dir.tx.TxPackets, dir.rx.RxPackets, dir.rx.Dropped.QueueFull)
				}
				if dir.rx.Dropped.QueueFull == 0 && dir.tx.TxBytes != dir.rx.RxBytes {
					t.Errorf("%s: sent %d bytes, received %d", dir.name, dir.tx.TxBytes, dir.rx.RxBytes)
				}
				// Each endpoint is the receiver once, so this checks both.
				drops := dir.rx.Dropped
				drops.QueueFull = 0
				if drops != (memlink.Drops{}) || tc.opts.Sync && dir.rx.Dropped.QueueFull != 0 {
					t.Errorf("%s: receiving end dropped %+v, want none", dir.name, dir.rx.Dropped)
				}
			}
		})
	}
}

// TestHub joins three stacks with a hub and checks ARP, unicast switching
// after learning, broadcast flooding and port removal.
func TestHub(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync bool
	}{{"sync", true}, {"async", false}} {
		t.Run(tc.name, func(t *testing.T) {
			hub, err := memlink.NewHub(memlink.Options{Sync: tc.sync})
			if err != nil {
				t.Fatalf("NewHub: %v", err)
			}
			var (
				ports [3]*memlink.Endpoint
				hosts [3]*host
				socks [3]*gonet.UDPConn
			)
			for i := range ports {
				ports[i] = hub.NewPort("")
				hosts[i] = newHost(t, ethernet.New(ports[i]), byte(i+1))
				socks[i] = udpSocket(t, hosts[i], ipv4.ProtocolNumber, tcpip.Address{}, 9)
			}
			t.Cleanup(hub.Close)
			a, b := hosts[0], hosts[1]

			// ARP: host 1 resolves host 2 with a broadcast request that
			// every other port sees.
			warmUp(t, socks[0], udpAddr(b.v4, 9), socks[1])
			if got, want := neighbor(a, ipv4.ProtocolNumber, b.v4), ports[1].LinkAddress(); got != want {
				t.Errorf("host 1 resolved %s to %q, want %q", b.v4, got, want)
			}
			if !eventually(func() bool { return ports[2].Stats().RxPackets == 1 }) {
				t.Errorf("port 3 received %d packets, want the ARP request, which is flooded", ports[2].Stats().RxPackets)
			}

			// Unicast: once the hub has learned both MACs, traffic between
			// hosts 1 and 2 never reaches port 3.
			before := ports[2].Stats()
			const n = 50
			sendSeqs(t, socks[0], udpAddr(b.v4, 9), 0, n, 100)
			sendSeqs(t, socks[1], udpAddr(a.v4, 9), 0, n, 100)
			if got := receiveSeqs(socks[1], n, 5*time.Second); len(got) != n {
				t.Errorf("host 2 received %d datagrams, want %d", len(got), n)
			}
			if got := receiveSeqs(socks[0], n, 5*time.Second); len(got) != n {
				t.Errorf("host 1 received %d datagrams, want %d", len(got), n)
			}
			if got := receiveSeqs(socks[2], 0, 50*time.Millisecond); len(got) != 0 {
				t.Errorf("host 3 received %d unicast datagrams for other hosts", len(got))
			}
			if after := ports[2].Stats(); after != before {
				t.Errorf("port 3 stats moved during unicast between the other ports: before %+v, after %+v", before, after)
			}

			// Broadcast reaches both other hosts.
			sendSeqs(t, socks[0], udpAddr(header.IPv4Broadcast, 9), 1000, 1, 12)
			for i := 1; i < 3; i++ {
				if got := seqs(receiveSeqs(socks[i], 1, 5*time.Second)); !slices.Equal(got, []uint32{1000}) {
					t.Errorf("host %d received broadcast datagrams %v, want [1000]", i+1, got)
				}
			}

			// A closed port is gone from the hub: floods skip it, and it
			// counts nothing.
			ports[2].Close()
			before = ports[2].Stats()
			sendSeqs(t, socks[0], udpAddr(header.IPv4Broadcast, 9), 1001, 1, 12)
			if got := seqs(receiveSeqs(socks[1], 1, 5*time.Second)); !slices.Equal(got, []uint32{1001}) {
				t.Errorf("host 2 received broadcast datagrams %v, want [1001]", got)
			}
			if after := ports[2].Stats(); after != before {
				t.Errorf("closed port 3 stats moved: before %+v, after %+v", before, after)
			}
		})
	}
}

// TestImpairment checks loss, duplication, delay and reordering, and that a
// seed makes them repeatable.
func TestImpairment(t *testing.T) {
	const n = 1000

	// run sends n datagrams from host 1 to host 2 over a raw IPv4 pair and
	// returns what arrived, once want have or none has for quiet, and both
	// ends.
	run := func(t *testing.T, opts memlink.Options, n, want int, quiet time.Duration) (got []datagram, ea, eb *memlink.Endpoint) {
		t.Helper()
		a, b, ea, eb := pairedHosts(t, opts)
		ca := udpSocket(t, a, ipv4.ProtocolNumber, a.v4, 1000)
		cb := udpSocket(t, b, ipv4.ProtocolNumber, b.v4, 2000)
		sendSeqs(t, ca, udpAddr(b.v4, 2000), 0, n, 64)
		got = receiveSeqs(cb, want, quiet)
		// The stacks send nothing of their own, so the impairment drew
		// for the datagrams only.
		if s := ea.Stats(); s.TxPackets != uint64(n) {
			t.Errorf("host 1 sent %d packets, want %d", s.TxPackets, n)
		}
		return got, ea, eb
	}

	t.Run("loss", func(t *testing.T) {
		got, ea, eb := run(t, memlink.Options{Sync: true, Impairment: memlink.Impairment{Loss: 0.5, Seed: 1}}, n, 0, 200*time.Millisecond)
		lost := n - len(got)
		if lost < n*4/10 || lost > n*6/10 {
			t.Errorf("lost %d of %d datagrams, want about half", lost, n)
		}
		if s := ea.Stats(); s.Dropped.Loss != uint64(lost) {
			t.Errorf("host 1 counted %d lost packets, %d went missing", s.Dropped.Loss, lost)
		}
		if s := eb.Stats(); s.RxPackets != uint64(len(got)) {
			t.Errorf("host 2 counted %d received packets, %d datagrams arrived", s.RxPackets, len(got))
		}
	})

	t.Run("same-seed-same-fate", func(t *testing.T) {
		fate := func(seed uint64) []uint32 {
			got, _, _ := run(t, memlink.Options{Sync: true, Impairment: memlink.Impairment{Loss: 0.3, Duplicate: 0.2, Seed: seed}}, 200, 0, 200*time.Millisecond)
			return seqs(got)
		}
		first, second, other := fate(42), fate(42), fate(43)
		if !slices.Equal(first, second) {
			t.Errorf("seed 42 delivered %v, then %v", first, second)
		}
		if slices.Equal(first, other) {
			t.Errorf("seeds 42 and 43 both delivered %v", first)
		}
	})

	t.Run("duplicate", func(t *testing.T) {
		got, ea, eb := run(t, memlink.Options{Sync: true, Impairment: memlink.Impairment{Duplicate: 1}}, n, 2*n, 5*time.Second)
		want := make([]uint32, 0, 2*n)
		for i := range n {
			want = append(want, uint32(i), uint32(i))
		}
		if got := seqs(got); !slices.Equal(got, want) {
			t.Errorf("received %d datagrams %v, want each of %d twice", len(got), got, n)
		}
		if s := ea.Stats(); s.Duplicated != n {
			t.Errorf("host 1 counted %d duplicates, want %d", s.Duplicated, n)
		}
		if s := eb.Stats(); s.RxPackets != 2*n {
			t.Errorf("host 2 counted %d received packets, want %d", s.RxPackets, 2*n)
		}
	})

	t.Run("delay", func(t *testing.T) {
		const (
			delay  = 20 * time.Millisecond
			jitter = 10 * time.Millisecond
			count  = 50
		)
		got, _, _ := run(t, memlink.Options{Impairment: memlink.Impairment{Delay: delay, Jitter: jitter, Seed: 1}}, count, count, 5*time.Second)
		if len(got) != count {
			t.Fatalf("received %d datagrams, want %d", len(got), count)
		}
		for i, d := range got {
			if d.seq != uint32(i) {
				t.Errorf("datagram %d arrived in place %d: jitter must not reorder", d.seq, i)
			}
			if d.latency < delay {
				t.Errorf("datagram %d took %v, want at least the delay of %v", d.seq, d.latency, delay)
			}
		}
	})

	t.Run("reorder", func(t *testing.T) {
		const count = 200
		got, _, eb := run(t, memlink.Options{Impairment: memlink.Impairment{Reorder: 0.3, Seed: 1}}, count, count, 5*time.Second)
		order := seqs(got)
		if sorted := slices.Sorted(slices.Values(order)); len(sorted) != count || sorted[0] != 0 || sorted[count-1] != count-1 || len(slices.Compact(sorted)) != count {
			t.Fatalf("received %v, want each of 0..%d once", order, count-1)
		}
		if slices.IsSorted(order) {
			t.Errorf("received all %d datagrams in order, want some reordered", count)
		}
		if s := eb.Stats(); s.Reordered == 0 {
			t.Errorf("host 2 counted no reordered packet")
		}
	})

	t.Run("reorder-releases-lone-packet", func(t *testing.T) {
		// Every packet is held back, and no later packet comes to overtake
		// it: it must still arrive.
		got, _, _ := run(t, memlink.Options{Impairment: memlink.Impairment{Reorder: 1}}, 1, 1, 5*time.Second)
		if got := seqs(got); !slices.Equal(got, []uint32{0}) {
			t.Errorf("received %v, want [0]", got)
		}
	})
}

// TestMTU checks that a packet above the MTU, measured without its link
// header, is dropped and counted, and that one at the MTU arrives whole,
// link header included.
func TestMTU(t *testing.T) {
	eth := []byte{
		0x02, 0, 0, 0, 0, 2, // Destination.
		0x02, 0, 0, 0, 0, 1, // Source.
		0x08, 0x00, // IPv4.
	}
	tests := []struct {
		name    string
		opts    memlink.Options
		linkHdr []byte
		size    int
		wantRx  bool
	}{
		{name: "raw/at-mtu", opts: memlink.Options{Sync: true}, size: 1500, wantRx: true},
		{name: "raw/above-mtu", opts: memlink.Options{Sync: true}, size: 1501},
		{name: "raw/async/above-mtu", opts: memlink.Options{}, size: 1501},
		{name: "raw/small-mtu/at-mtu", opts: memlink.Options{Sync: true, MTU: 68}, size: 68, wantRx: true},
		{name: "raw/small-mtu/above-mtu", opts: memlink.Options{Sync: true, MTU: 68}, size: 69},
		{name: "ethernet/at-mtu", opts: memlink.Options{Sync: true, Ethernet: true}, linkHdr: eth, size: 1500, wantRx: true},
		{name: "ethernet/above-mtu", opts: memlink.Options{Sync: true, Ethernet: true}, linkHdr: eth, size: 1501},
		{name: "ethernet/jumbo/at-mtu", opts: memlink.Options{Ethernet: true, MTU: 9000}, linkHdr: eth, size: 9000, wantRx: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := memlink.NewPair(tc.opts)
			if err != nil {
				t.Fatalf("NewPair: %v", err)
			}
			defer a.Close()
			defer b.Close()
			var r recorder
			b.Attach(&r)

			payload := pattern(tc.size)
			write(a, header.IPv4ProtocolNumber, tc.linkHdr, payload)
			// A packet that fits; once it arrives, the one before it was
			// either delivered or dropped.
			write(a, header.IPv4ProtocolNumber, tc.linkHdr, pattern(20))

			want := 1
			if tc.wantRx {
				want = 2
			}
			got := r.waitFor(t, want)
			if len(got) != want {
				t.Fatalf("received %d packets, want %d", len(got), want)
			}
			if tc.wantRx {
				if frame := slices.Concat(tc.linkHdr, payload); !slices.Equal(got[0].data, frame) {
					t.Errorf("received %d bytes, want the %d bytes written, link header included", len(got[0].data), len(frame))
				}
				if got[0].proto != header.IPv4ProtocolNumber {
					t.Errorf("delivered as protocol %#x, want %#x", got[0].proto, header.IPv4ProtocolNumber)
				}
			}
			wantTooBig := uint64(0)
			if !tc.wantRx {
				wantTooBig = 1
			}
			if s := a.Stats(); s.Dropped.TooBig != wantTooBig || s.TxPackets != uint64(want) {
				t.Errorf("sender stats %+v, want %d sent and %d too big", s, want, wantTooBig)
			}
		})
	}
}

// TestLinkDown checks that a down endpoint drops, and counts, what is written
// to it and what arrives at it, and carries traffic again once up.
func TestLinkDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts memlink.Options
	}{{"sync", memlink.Options{Sync: true}}, {"async", memlink.Options{}}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, ea, eb := pairedHosts(t, tc.opts)
			ca := udpSocket(t, a, ipv4.ProtocolNumber, a.v4, 1000)
			cb := udpSocket(t, b, ipv4.ProtocolNumber, b.v4, 2000)
			toA, toB := udpAddr(a.v4, 1000), udpAddr(b.v4, 2000)
			const n = 10

			ea.SetLinkUp(false)
			if ea.LinkUp() {
				t.Fatalf("LinkUp() = true after SetLinkUp(false)")
			}
			sendSeqs(t, ca, toB, 0, n, 64)
			sendSeqs(t, cb, toA, 0, n, 64)
			if got := receiveSeqs(cb, 0, 100*time.Millisecond); len(got) != 0 {
				t.Errorf("host 2 received %d datagrams from a down endpoint", len(got))
			}
			if got := receiveSeqs(ca, 0, 100*time.Millisecond); len(got) != 0 {
				t.Errorf("host 1 received %d datagrams through a down endpoint", len(got))
			}
			if s := ea.Stats(); s.Dropped.LinkDown != 2*n || s.TxPackets != 0 || s.RxPackets != 0 {
				t.Errorf("down endpoint stats %+v, want %d link-down drops and no traffic", s, 2*n)
			}

			ea.SetLinkUp(true)
			sendSeqs(t, ca, toB, n, n, 64)
			if got := receiveSeqs(cb, n, 5*time.Second); len(got) != n {
				t.Errorf("host 2 received %d datagrams after link up, want %d", len(got), n)
			}
			if s := eb.Stats(); s.Dropped.LinkDown != 0 {
				t.Errorf("up endpoint counted %d link-down drops", s.Dropped.LinkDown)
			}
		})
	}
}

// TestOptionsValidation checks that NewPair and NewHub reject bad options
// with an error naming the field.
func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name      string
		opts      memlink.Options
		wantField string // Empty for valid options.
	}{
		{name: "zero", opts: memlink.Options{}},
		{name: "mtu-ipv4-minimum", opts: memlink.Options{MTU: 68}},
		{name: "mtu-maximum", opts: memlink.Options{MTU: 65535}},
		{name: "certain-loss", opts: memlink.Options{Impairment: memlink.Impairment{Loss: 1}}},
		{name: "sync-loss", opts: memlink.Options{Sync: true, Impairment: memlink.Impairment{Loss: 0.5, Duplicate: 0.5}}},
		{name: "macs", opts: memlink.Options{MACA: "\x02\x00\x00\x00\x00\x01", MACB: "\x02\x00\x00\x00\x00\x02"}},
		{name: "mtu-too-small", opts: memlink.Options{MTU: 67}, wantField: "MTU"},
		{name: "mtu-too-large", opts: memlink.Options{MTU: 65536}, wantField: "MTU"},
		{name: "negative-queue", opts: memlink.Options{QueueLen: -1}, wantField: "QueueLen"},
		{name: "negative-loss", opts: memlink.Options{Impairment: memlink.Impairment{Loss: -0.1}}, wantField: "Impairment.Loss"},
		{name: "loss-above-one", opts: memlink.Options{Impairment: memlink.Impairment{Loss: 1.5}}, wantField: "Impairment.Loss"},
		{name: "nan-loss", opts: memlink.Options{Impairment: memlink.Impairment{Loss: math.NaN()}}, wantField: "Impairment.Loss"},
		{name: "duplicate-above-one", opts: memlink.Options{Impairment: memlink.Impairment{Duplicate: 2}}, wantField: "Impairment.Duplicate"},
		{name: "negative-reorder", opts: memlink.Options{Impairment: memlink.Impairment{Reorder: -1}}, wantField: "Impairment.Reorder"},
		{name: "negative-delay", opts: memlink.Options{Impairment: memlink.Impairment{Delay: -time.Millisecond}}, wantField: "Impairment.Delay"},
		{name: "negative-jitter", opts: memlink.Options{Impairment: memlink.Impairment{Jitter: -time.Millisecond}}, wantField: "Impairment.Jitter"},
		{name: "sync-delay", opts: memlink.Options{Sync: true, Impairment: memlink.Impairment{Delay: time.Millisecond}}, wantField: "Impairment.Delay"},
		{name: "sync-jitter", opts: memlink.Options{Sync: true, Impairment: memlink.Impairment{Jitter: time.Millisecond}}, wantField: "Impairment.Jitter"},
		{name: "sync-reorder", opts: memlink.Options{Sync: true, Impairment: memlink.Impairment{Reorder: 0.1}}, wantField: "Impairment.Reorder"},
		{name: "short-mac", opts: memlink.Options{MACA: "\x02\x00\x00"}, wantField: "MACA"},
		{name: "multicast-mac", opts: memlink.Options{MACB: "\x01\x00\x5e\x00\x00\x01"}, wantField: "MACB"},
		{name: "same-macs", opts: memlink.Options{MACA: "\x02\x00\x00\x00\x00\x01", MACB: "\x02\x00\x00\x00\x00\x01"}, wantField: "MACA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(ctor string, err error) {
				t.Helper()
				switch {
				case tc.wantField == "" && err != nil:
					t.Errorf("%s: unexpected error: %v", ctor, err)
				case tc.wantField != "" && err == nil:
					t.Errorf("%s: got no error, want one naming %s", ctor, tc.wantField)
				case tc.wantField != "" && (!errors.Is(err, memlink.ErrInvalidOptions) || !strings.Contains(err.Error(), tc.wantField)):
					t.Errorf("%s: got error %q, want ErrInvalidOptions naming %s", ctor, err, tc.wantField)
				}
			}
			a, b, err := memlink.NewPair(tc.opts)
			check("NewPair", err)
			if err == nil {
				a.Close()
				b.Close()
			}
			if strings.HasPrefix(tc.wantField, "MAC") {
				return // NewHub ignores MACA and MACB.
			}
			h, err := memlink.NewHub(tc.opts)
			check("NewHub", err)
			if err == nil {
				h.Close()
			}
		})
	}
}

// TestEndpointProperties checks what an endpoint reports to a stack, bare
// and behind ethernet.New.
func TestEndpointProperties(t *testing.T) {
	const macA = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x0a")
	tests := []struct {
		name         string
		opts         memlink.Options
		wrapEthernet bool
		wantMTU      uint32
		wantHeader   uint16
		wantARP      header.ARPHardwareType
		wantCaps     stack.LinkEndpointCapabilities
	}{
		{name: "raw", opts: memlink.Options{}, wantMTU: 1500, wantARP: header.ARPHardwareNone},
		{name: "raw/mtu", opts: memlink.Options{MTU: 9000}, wantMTU: 9000, wantARP: header.ARPHardwareNone},
		{
			name: "raw/offload", opts: memlink.Options{ChecksumOffload: true}, wantMTU: 1500, wantARP: header.ARPHardwareNone,
			wantCaps: stack.CapabilityTXChecksumOffload | stack.CapabilityRXChecksumOffload,
		},
		{
			name: "ethernet/bare", opts: memlink.Options{Ethernet: true}, wantMTU: 1514, wantARP: header.ARPHardwareEther,
			wantCaps: stack.CapabilityResolutionRequired,
		},
		{
			name: "ethernet/wrapped", opts: memlink.Options{Ethernet: true}, wrapEthernet: true,
			wantMTU: 1500, wantHeader: header.EthernetMinimumSize, wantARP: header.ARPHardwareEther,
			wantCaps: stack.CapabilityResolutionRequired,
		},
		{
			name: "ethernet/wrapped/mac", opts: memlink.Options{Ethernet: true, MACA: macA, MTU: 9000}, wrapEthernet: true,
			wantMTU: 9000, wantHeader: header.EthernetMinimumSize, wantARP: header.ARPHardwareEther,
			wantCaps: stack.CapabilityResolutionRequired,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := memlink.NewPair(tc.opts)
			if err != nil {
				t.Fatalf("NewPair: %v", err)
			}
			defer a.Close()
			defer b.Close()
			ep := wrap(a, tc.wrapEthernet)
			if got := ep.MTU(); got != tc.wantMTU {
				t.Errorf("MTU() = %d, want %d", got, tc.wantMTU)
			}
			if got := ep.MaxHeaderLength(); got != tc.wantHeader {
				t.Errorf("MaxHeaderLength() = %d, want %d", got, tc.wantHeader)
			}
			if got := ep.ARPHardwareType(); got != tc.wantARP {
				t.Errorf("ARPHardwareType() = %d, want %d", got, tc.wantARP)
			}
			if got := ep.Capabilities(); got != tc.wantCaps {
				t.Errorf("Capabilities() = %#x, want %#x", got, tc.wantCaps)
			}
			la, lb := ep.LinkAddress(), b.LinkAddress()
			if tc.opts.MACA != "" && la != tc.opts.MACA {
				t.Errorf("LinkAddress() = %q, want %q", la, tc.opts.MACA)
			}
			for _, l := range []tcpip.LinkAddress{la, lb} {
				if len(l) != header.EthernetAddressSize || header.IsMulticastEthernetAddress(l) || l[0]&2 == 0 {
					t.Errorf("link address %q is not a locally administered unicast MAC", l)
				}
			}
			if la == lb {
				t.Errorf("both ends have link address %q", la)
			}
			if ep.IsAttached() {
				t.Errorf("IsAttached() = true before Attach")
			}
		})
	}
}

// TestChecksumOffload checks that delivered packets are marked checksum-
// validated exactly when offload is on.
func TestChecksumOffload(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts memlink.Options
	}{
		{"off/sync", memlink.Options{Sync: true}},
		{"on/sync", memlink.Options{Sync: true, ChecksumOffload: true}},
		{"off/async", memlink.Options{}},
		{"on/async", memlink.Options{ChecksumOffload: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := memlink.NewPair(tc.opts)
			if err != nil {
				t.Fatalf("NewPair: %v", err)
			}
			defer a.Close()
			defer b.Close()
			var r recorder
			b.Attach(&r)
			write(a, header.IPv4ProtocolNumber, nil, pattern(100))
			got := r.waitFor(t, 1)
			if len(got) != 1 {
				t.Fatalf("received %d packets, want 1", len(got))
			}
			if got[0].validated != tc.opts.ChecksumOffload {
				t.Errorf("RXChecksumValidated = %t, want %t", got[0].validated, tc.opts.ChecksumOffload)
			}
		})
	}
}

// TestDuplicatesAreIndependent checks that a receiver writing into a
// delivered packet does not change its duplicate.
func TestDuplicatesAreIndependent(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts memlink.Options
	}{
		{"sync", memlink.Options{Sync: true, Impairment: memlink.Impairment{Duplicate: 1}}},
		{"async", memlink.Options{Impairment: memlink.Impairment{Duplicate: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := memlink.NewPair(tc.opts)
			if err != nil {
				t.Fatalf("NewPair: %v", err)
			}
			defer a.Close()
			defer b.Close()
			r := recorder{onDeliver: func(pkt *stack.PacketBuffer) {
				for _, s := range pkt.AsSlices() {
					clear(s)
				}
			}}
			b.Attach(&r)
			payload := pattern(300)
			write(a, header.IPv4ProtocolNumber, nil, payload)
			got := r.waitFor(t, 2)
			if len(got) != 2 {
				t.Fatalf("received %d packets, want 2", len(got))
			}
			for i, p := range got {
				if !slices.Equal(p.data, payload) {
					t.Errorf("copy %d differs from the packet written", i)
				}
			}
		})
	}
}

// TestQueueFull checks that arrivals beyond QueueLen are dropped and counted
// while the receiving stack is busy.
func TestQueueFull(t *testing.T) {
	const queueLen, written = 4, 20
	a, b, err := memlink.NewPair(memlink.Options{QueueLen: queueLen})
	if err != nil {
		t.Fatalf("NewPair: %v", err)
	}
	defer a.Close()
	defer b.Close()
	busy, unblock := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := recorder{onDeliver: func(*stack.PacketBuffer) {
		once.Do(func() {
			close(busy)
			<-unblock
		})
	}}
	b.Attach(&r)

	// The first packet keeps the receiving stack busy; it has left the
	// queue, which then fills up.
	write(a, header.IPv4ProtocolNumber, nil, pattern(100))
	<-busy
	for range written - 1 {
		write(a, header.IPv4ProtocolNumber, nil, pattern(100))
	}
	if s := b.Stats(); s.Dropped.QueueFull != written-1-queueLen {
		t.Errorf("counted %d queue-full drops, want %d", s.Dropped.QueueFull, written-1-queueLen)
	}
	close(unblock)
	if got := r.waitFor(t, 1+queueLen); len(got) != 1+queueLen {
		t.Errorf("received %d packets, want %d", len(got), 1+queueLen)
	}
}

// TestDelayedPacketsCountAgainstQueueLen checks that packets the wire holds
// for a delay still occupy the queue, so a long delay cannot grow it without
// bound.
func TestDelayedPacketsCountAgainstQueueLen(t *testing.T) {
	const queueLen, written = 8, 30
	a, b, err := memlink.NewPair(memlink.Options{QueueLen: queueLen, Impairment: memlink.Impairment{Delay: time.Hour}})
	if err != nil {
		t.Fatalf("NewPair: %v", err)
	}
	defer a.Close()
	defer b.Close()
	var r recorder
	b.Attach(&r)
	for range written {
		write(a, header.IPv4ProtocolNumber, nil, pattern(100))
		time.Sleep(100 * time.Microsecond) // Let the goroutine take some.
	}
	if s := b.Stats(); s.Dropped.QueueFull != written-queueLen || s.RxPackets != 0 {
		t.Errorf("stats %+v, want %d queue-full drops and nothing delivered", s, written-queueLen)
	}
}

// TestNotAttached checks that packets for a detached or closed endpoint are
// dropped and counted, and that a closed endpoint sends nothing.
func TestNotAttached(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts memlink.Options
	}{{"sync", memlink.Options{Sync: true}}, {"async", memlink.Options{}}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := memlink.NewPair(tc.opts)
			if err != nil {
				t.Fatalf("NewPair: %v", err)
			}
			defer a.Close()
			var ra, rb recorder
			a.Attach(&ra)
			send := func() { write(a, header.IPv4ProtocolNumber, nil, pattern(64)) }

			send() // b detached.
			b.Attach(&rb)
			if !b.IsAttached() {
				t.Errorf("IsAttached() = false after Attach")
			}
			send()
			if got := rb.waitFor(t, 1); len(got) != 1 {
				t.Errorf("received %d packets while attached, want 1", len(got))
			}
			b.Attach(nil)
			b.Wait()
			send()
			b.Close()
			b.Attach(&rb) // A closed endpoint stays detached.
			if b.IsAttached() {
				t.Errorf("IsAttached() = true after Close")
			}
			send()
			write(b, header.IPv4ProtocolNumber, nil, pattern(64))

			if s := b.Stats(); s.Dropped.NotAttached != 4 || s.RxPackets != 1 || s.TxPackets != 0 {
				t.Errorf("b stats %+v, want 1 received, 4 not-attached drops and nothing sent", s)
			}
			if got := len(ra.packets()); got != 0 {
				t.Errorf("a received %d packets from a closed endpoint", got)
			}
		})
	}
}

// eventually reports whether cond holds within a few seconds.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// deliveryGoroutines counts the delivery goroutines of all endpoints: those
// Attach started, whether they have begun to run or not.
func deliveryGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "created by github.com/udptunnel/udptunnel/endpoints/memlink.(*Endpoint).Attach")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestCloseLeavesNoGoroutine checks that Attach starts one delivery goroutine
// per endpoint, and that Close, or Attach(nil) and Wait, stop it before
// returning.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	base := deliveryGoroutines()
	expect := func(what string, want int) {
		t.Helper()
		if got := deliveryGoroutines() - base; got != want {
			t.Errorf("%s: %d delivery goroutines, want %d", what, got, want)
		}
	}

	a, b, err := memlink.NewPair(memlink.Options{Impairment: memlink.Impairment{Delay: time.Hour, Reorder: 0.5}})
	if err != nil {
		t.Fatalf("NewPair: %v", err)
	}
	hub, err := memlink.NewHub(memlink.Options{})
	if err != nil {
		t.Fatalf("NewHub: %v", err)
	}
	ports := []*memlink.Endpoint{hub.NewPort(""), hub.NewPort(""), hub.NewPort("")}
	expect("before Attach", 0)

	var r recorder
	for _, ep := range append([]*memlink.Endpoint{a, b}, ports...) {
		ep.Attach(&r)
	}
	expect("after Attach", 5)

	// Leave packets in the queues: an hour's delay keeps them there.
	for range 10 {
		write(a, header.IPv4ProtocolNumber, nil, pattern(64))
		write(ports[0], header.IPv4ProtocolNumber, slices.Concat([]byte(header.EthernetBroadcastAddress), []byte(ports[0].LinkAddress()), []byte{0x08, 0}), pattern(64))
	}

	b.Attach(nil)
	b.Wait()
	expect("after Attach(nil) and Wait", 4)
	a.Close()
	expect("after closing the pair", 3)
	hub.Close()
	expect("after closing the hub", 0)
	b.Close()

	if s := b.Stats(); s.Dropped.NotAttached != 10 || s.RxPackets != 0 {
		t.Errorf("b stats %+v, want the 10 delayed packets counted as not attached", s)
	}
	a.Wait()
	b.Wait()
	for _, p := range ports {
		p.Wait()
	}
	expect("after Wait", 0)
}

// TestHubFrames checks that a hub switches frames whether the Ethernet
// header was pushed as a link header or written as data, and counts frames
// too short to switch.
func TestHubFrames(t *testing.T) {
	const macA, macB = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x0a"), tcpip.LinkAddress("\x02\x00\x00\x00\x00\x0b")
	eth := slices.Concat([]byte(macB), []byte(macA), []byte{0x08, 0x00})
	tests := []struct {
		name          string
		linkHdr, data []byte
		wantRx        bool
	}{
		{name: "pushed-header", linkHdr: eth, data: pattern(100), wantRx: true},
		{name: "header-in-data", data: slices.Concat(eth, pattern(100)), wantRx: true},
		{name: "too-short", data: eth[:10]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub, err := memlink.NewHub(memlink.Options{Sync: true})
			if err != nil {
				t.Fatalf("NewHub: %v", err)
			}
			defer hub.Close()
			a, b := hub.NewPort(macA), hub.NewPort(macB)
			var ra, rb recorder
			a.Attach(&ra)
			b.Attach(&rb)
			write(a, header.IPv4ProtocolNumber, tc.linkHdr, tc.data)

			var want [][]byte
			if tc.wantRx {
				want = [][]byte{slices.Concat(tc.linkHdr, tc.data)}
			}
			var got [][]byte
			for _, p := range rb.packets() {
				got = append(got, p.data)
			}
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("port B received %x, want %x", got, want)
			}
			if n := len(ra.packets()); n != 0 {
				t.Errorf("port A received %d packets of its own", n)
			}
			wantMalformed := uint64(0)
			if !tc.wantRx {
				wantMalformed = 1
			}
			if s := a.Stats(); s.Dropped.Malformed != wantMalformed {
				t.Errorf("port A counted %d malformed frames, want %d", s.Dropped.Malformed, wantMalformed)
			}
		})
	}
}
