package stack_test

import (
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

func TestReceiveChecksumPolicy(t *testing.T) {
	tests := []struct {
		name   string
		v6     bool
		mode   csumMode
		policy stack.ChecksumPolicy
		accept bool
	}{
		{"ipv4 valid", false, csumGood, stack.ChecksumPolicy{}, true},
		{"ipv4 wrong", false, csumBad, stack.ChecksumPolicy{}, false},
		{"ipv4 zero", false, csumZero, stack.ChecksumPolicy{}, true},
		{"ipv4 wrong with ZeroRx6", false, csumBad, stack.ChecksumPolicy{ZeroRx6: true}, false},
		{"ipv6 valid", true, csumGood, stack.ChecksumPolicy{}, true},
		{"ipv6 wrong", true, csumBad, stack.ChecksumPolicy{}, false},
		{"ipv6 zero", true, csumZero, stack.ChecksumPolicy{}, false},
		{"ipv6 zero with ZeroTx6 only", true, csumZero, stack.ChecksumPolicy{ZeroTx6: true}, false},
		{"ipv6 zero with ZeroRx6", true, csumZero, stack.ChecksumPolicy{ZeroRx6: true}, true},
		{"ipv6 wrong with ZeroRx6", true, csumBad, stack.ChecksumPolicy{ZeroRx6: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			so, rec := h.openSocket(t, stack.SocketConfig{Checksum: tt.policy})
			src, dst := netip.AddrPortFrom(peer4, 4000), netip.AddrPortFrom(local4, 7000)
			if tt.v6 {
				src, dst = netip.AddrPortFrom(peer6, 4000), netip.AddrPortFrom(local6, 7000)
			}
			// Odd and even sizes: the checksum folds a trailing byte.
			for _, n := range []int{200, 201} {
				h.inject(udpPacket(src, dst, pattern(n, 3), tt.mode))
			}
			s := so.Counters().Stats()
			got := len(rec.received())
			if tt.accept {
				if got != 2 || s.RxPackets != 2 || s.TotalDrops() != 0 {
					t.Errorf("encap got %d datagrams, counters %v; want both accepted", got, s)
				}
				return
			}
			if got != 0 {
				t.Errorf("encap got %d datagrams with a rejected checksum", got)
			}
			if s.Dropped(stack.DropBadChecksum) != 2 || s.TotalDrops() != 2 || s.RxPackets != 0 {
				t.Errorf("counters %v, want exactly 2 bad_checksum drops", s)
			}
		})
	}
}

func TestTransmitChecksum(t *testing.T) {
	tests := []struct {
		name   string
		v6     bool
		policy stack.ChecksumPolicy
		params stack.XmitParams
		zero   bool // want a zero checksum, else a valid non-zero one
	}{
		{"ipv4", false, stack.ChecksumPolicy{}, stack.XmitParams{}, false},
		{"ipv6", true, stack.ChecksumPolicy{}, stack.XmitParams{}, false},
		{"ipv6 flow label", true, stack.ChecksumPolicy{}, stack.XmitParams{FlowLabel: 1}, false},
		{"ipv4 ZeroTx4", false, stack.ChecksumPolicy{ZeroTx4: true}, stack.XmitParams{}, true},
		{"ipv6 ZeroTx4", true, stack.ChecksumPolicy{ZeroTx4: true}, stack.XmitParams{}, false},
		{"ipv6 ZeroTx6", true, stack.ChecksumPolicy{ZeroTx6: true}, stack.XmitParams{}, true},
		{"ipv6 ZeroTx6 flow label", true, stack.ChecksumPolicy{ZeroTx6: true}, stack.XmitParams{FlowLabel: 1}, true},
		{"ipv4 ZeroTx6", false, stack.ChecksumPolicy{ZeroTx6: true}, stack.XmitParams{}, false},
		{"ipv6 ZeroRx6", true, stack.ChecksumPolicy{ZeroRx6: true}, stack.XmitParams{}, false},
		{"ipv4 NoChecksum", false, stack.ChecksumPolicy{}, stack.XmitParams{NoChecksum: true}, true},
		{"ipv6 NoChecksum", true, stack.ChecksumPolicy{}, stack.XmitParams{NoChecksum: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			so, _ := h.openSocket(t, stack.SocketConfig{Checksum: tt.policy})
			p := tt.params
			p.Dst, p.DstPort = peer4, 8000
			if tt.v6 {
				p.Dst = peer6
			}
			for _, n := range []int{0, 1, 2, 999, 1000} {
				if err := xmit(so, pattern(n, byte(n)), 128, p); err != nil {
					t.Fatalf("Xmit(%d bytes): %v", n, err)
				}
				o := parseOuter(t, h.readUDP(t))
				switch {
				case tt.zero && o.checksum != 0:
					t.Errorf("%d bytes: checksum %#04x, want 0", n, o.checksum)
				case !tt.zero && (o.checksum == 0 || !o.checksumValid):
					t.Errorf("%d bytes: checksum %#04x is not valid", n, o.checksum)
				}
			}
		})
	}
}

// TestChecksumRoundTrip sends through one socket and receives on another
// over the channel underlay looped back, so that what Xmit computes is
// what HandlePacket verifies.
func TestChecksumRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v6     bool
		tx, rx stack.ChecksumPolicy
		accept bool
	}{
		{"ipv4", false, stack.ChecksumPolicy{}, stack.ChecksumPolicy{}, true},
		{"ipv4 zero", false, stack.ChecksumPolicy{ZeroTx4: true}, stack.ChecksumPolicy{}, true},
		{"ipv6", true, stack.ChecksumPolicy{}, stack.ChecksumPolicy{}, true},
		{"ipv6 zero refused", true, stack.ChecksumPolicy{ZeroTx6: true}, stack.ChecksumPolicy{}, false},
		{"ipv6 zero allowed", true, stack.ChecksumPolicy{ZeroTx6: true}, stack.ChecksumPolicy{ZeroRx6: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newWireHost(t, 0)
			tx, _ := h.openSocket(t, stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 7000), Checksum: tc.tx})
			rx, rec := h.openSocket(t, stack.SocketConfig{Local: netip.AddrPortFrom(netip.Addr{}, 8000), Checksum: tc.rx})
			dst := local4
			if tc.v6 {
				dst = local6
			}
			// Sent to ourselves: gVisor loops it back (HandleLocal) without
			// touching the checksum field.
			if err := xmit(tx, pattern(501, 1), 128, stack.XmitParams{Dst: dst, DstPort: 8000}); err != nil {
				t.Fatal(err)
			}
			got := len(rec.received())
			if s := rx.Counters().Stats(); tc.accept && (got != 1 || s.TotalDrops() != 0) || !tc.accept && (got != 0 || s.Dropped(stack.DropBadChecksum) != 1) {
				t.Errorf("accept=%v: encap got %d, counters %v", tc.accept, got, s)
			}
		})
	}
}
