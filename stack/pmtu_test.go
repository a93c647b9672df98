package stack_test

import (
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

func TestICMPErrorPathMTU(t *testing.T) {
	mapped := netip.MustParseAddrPort("[::ffff:10.0.0.2]:4789")
	for _, tc := range []struct {
		ie     stack.ICMPError
		dst    netip.Addr
		mtu    uint32
		wantOK bool
	}{
		{stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: mapped, MTU: 1400}, netip.MustParseAddr("10.0.0.2"), 1400, true},
		{stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: mapped}, netip.Addr{}, 0, false},
		{stack.ICMPError{Kind: stack.ICMPUnreachable, Dst: mapped, MTU: 1400}, netip.Addr{}, 0, false},
	} {
		dst, mtu, ok := tc.ie.PathMTU()
		if dst != tc.dst || mtu != tc.mtu || ok != tc.wantOK {
			t.Errorf("%+v.PathMTU() = %v, %v, %v; want %v, %v, %v", tc.ie, dst, mtu, ok, tc.dst, tc.mtu, tc.wantOK)
		}
	}
}
