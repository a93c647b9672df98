package fou

import (
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

// TestPathMTUFromICMP: a "packet too big" for a remote lowers the MTU of
// the device sending to it (by the device's overhead), and of no other;
// other ICMP errors change nothing.
func TestPathMTUFromICMP(t *testing.T) {
	_, s, d := voidHost(t, SocketConfig{Type: TypeGUE}, Config{})
	other, err := s.AddDevice(nil, Config{Remote: netip.MustParseAddr("10.99.0.3")})
	if err != nil {
		t.Fatal(err)
	}
	const overhead = 20 + 8 + GUEHeaderLen
	if d.InnerMTU() != 1500-overhead {
		t.Fatalf("derived MTU %d", d.InnerMTU())
	}
	e := (*gueEncap)(s)
	dst := netip.AddrPortFrom(d.cfg.Remote, GUEPort)
	e.ReceiveError(stack.ICMPError{Kind: stack.ICMPUnreachable, Dst: dst, MTU: 1400})
	if d.InnerMTU() != 1500-overhead {
		t.Errorf("an unreachable error changed the MTU to %d", d.InnerMTU())
	}
	e.ReceiveError(stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: dst, MTU: 1400})
	if got := d.InnerMTU(); got != 1400-overhead {
		t.Errorf("MTU %d after a path MTU of 1400, want %d", got, 1400-overhead)
	}
	if got := other.InnerMTU(); got != 1500-overhead {
		t.Errorf("the device to another remote changed its MTU to %d", got)
	}
}
