package tunneltest

import (
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// Outer4 are the outer (underlay) addresses of the two hosts of a Pair
// over IPv4.
var Outer4 = [2]netip.Prefix{netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("10.99.0.2/24")}

// NewStack returns a stack, closed when tb ends, whose NIC "underlay" on
// ep holds the outer addresses, and that NIC's ID.
func NewStack(tb testing.TB, ep stack.LinkEndpoint, outer ...netip.Prefix) (*stack.Stack, stack.NICID) {
	tb.Helper()
	st := stack.New(stack.Options{})
	tb.Cleanup(st.Close)
	nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range outer {
		if err := st.AddAddress(nic, p); err != nil {
			tb.Fatal(err)
		}
	}
	return st, nic
}

// Underlay is one host of a Pair: its stack, the underlay NIC, the outer
// address on it and its end of the wire.
type Underlay struct {
	St    *stack.Stack
	NIC   stack.NICID
	Outer netip.Addr
	Wire  *memlink.Endpoint
}

// Pair returns two hosts joined by a memlink wire made with opts, host i
// with outer[i] on its NIC "underlay" (NewStack). When tb ends the wire
// closes before the stacks, as memlink's teardown note asks. The tunnels'
// two-host tests open their sockets and devices on top.
func Pair(tb testing.TB, opts memlink.Options, outer [2]netip.Prefix) [2]Underlay {
	tb.Helper()
	a, b, err := memlink.NewPair(opts)
	if err != nil {
		tb.Fatal(err)
	}
	var us [2]Underlay
	for i, ep := range []*memlink.Endpoint{a, b} {
		st, nic := NewStack(tb, ep, outer[i])
		us[i] = Underlay{St: st, NIC: nic, Outer: outer[i].Addr(), Wire: ep}
	}
	// Cleanups run last-in first-out: the wire closes first.
	tb.Cleanup(func() { a.Close(); b.Close() })
	return us
}
