package gtpu

import (
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/stack"
)

// TestLookupError: an ICMP error is taken for ours only when it quotes a
// G-PDU to a remote TEID of a session; and a "packet too big" for a peer
// lowers the MTU of the device that sends to it.
func TestLookupError(t *testing.T) {
	_, s, d := voidHost(t) // session: remote TEID 43 to 10.99.0.2
	e := (*encap)(s)
	hdr := func(flags uint8, typ MessageType, teid TEID) []byte {
		b := make([]byte, HeaderLen)
		Header(b).Encode(&Fields{Type: typ, TEID: teid})
		b[0] = flags
		return b
	}
	for _, tc := range []struct {
		name   string
		quoted []byte
		want   bool
	}{
		{"G-PDU to remote TEID 43", hdr(0x30, GPDU, 43), true},
		{"G-PDU to our own local TEID 42", hdr(0x30, GPDU, 42), false},
		{"unknown TEID", hdr(0x30, GPDU, 44), false},
		{"Echo Request", hdr(0x32, EchoRequest, 43), false},
		{"version 2", hdr(0x50, GPDU, 43), false},
		{"7 octets", hdr(0x30, GPDU, 43)[:7], false},
	} {
		if got := e.LookupError(tc.quoted); got != tc.want {
			t.Errorf("%s: LookupError = %v, want %v", tc.name, got, tc.want)
		}
	}
	mtu := d.InnerMTU()
	e.ReceiveError(stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: netip.AddrPortFrom(netip.MustParseAddr("10.99.0.9"), DefaultPort), MTU: 1400})
	if d.InnerMTU() != mtu {
		t.Errorf("MTU changed to %d by an error for another peer", d.InnerMTU())
	}
	e.ReceiveError(stack.ICMPError{Kind: stack.ICMPPacketTooBig, Dst: netip.AddrPortFrom(voidPeer, DefaultPort), MTU: 1400})
	if want := uint32(1400 - 20 - 8 - HeaderLen); d.InnerMTU() != want {
		t.Errorf("MTU %d after a packet too big of 1400 for the peer, want %d", d.InnerMTU(), want)
	}
}
