package l2tp

import (
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

// TestMTUAndICMP checks the derived MTU (underlay minus outer IPv4, UDP,
// the L2TPv3 header with cookie and sublayer, and Ethernet), that ICMP
// errors count only when they quote one of the tunnel's data messages
// (encap_err_lookup), and that "fragmentation needed" for the remote
// lowers the session's MTU while one for another address does not.
func TestMTUAndICMP(t *testing.T) {
	_, s, d := voidHost(t, benchConfig())
	if got, want := d.InnerMTU(), uint32(1500-20-8-16-14); got != want {
		t.Errorf("derived MTU %d, want %d", got, want)
	}
	e := (*encap)(s)
	quoted := make([]byte, 16)
	Header(quoted).Encode(&Fields{SessionID: 42, Cookie: testCookie, L2Spec: L2SpecDefault})
	if !e.LookupError(quoted[:8]) {
		t.Error("LookupError refused a quoted data message of the session")
	}
	Header(quoted).SetSessionID(43)
	if e.LookupError(quoted[:8]) {
		t.Error("LookupError accepted an unknown session")
	}
	if e.LookupError(quoted[:7]) || e.LookupError([]byte{0xc8, 0x03}) {
		t.Error("LookupError accepted a truncated header or a control message")
	}
	e.ReceiveError(stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: netip.MustParseAddrPort("10.99.0.3:1701"), MTU: 1300})
	if got := d.InnerMTU(); got != 1442 {
		t.Errorf("MTU %d after an error for another host, want 1442", got)
	}
	e.ReceiveError(stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: netip.MustParseAddrPort("10.99.0.2:1701"), MTU: 1400})
	if got, want := d.InnerMTU(), uint32(1400-20-8-16-14); got != want {
		t.Errorf("MTU %d after fragmentation needed at 1400, want %d", got, want)
	}
}
