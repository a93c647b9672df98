package stack_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// TestMappedPrefixes: IPv4-mapped IPv6 prefixes are IPv4 prefixes, and a
// mapped prefix shorter than the mapping is an error, never a panic.
func TestMappedPrefixes(t *testing.T) {
	st := stack.New(stack.Options{})
	defer st.Close()
	a, _, err := memlink.NewPair(memlink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nic, err := st.AddNIC(a, stack.NICOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddAddress(nic, netip.MustParsePrefix("::ffff:10.5.0.1/120")); err != nil {
		t.Fatalf("AddAddress(mapped /120): %v", err)
	}
	if err := st.AddRoute(netip.MustParsePrefix("::ffff:10.6.0.0/104"), netip.Addr{}, nic); err != nil {
		t.Fatalf("AddRoute(mapped /104): %v", err)
	}
	var found4, found8 bool
	for _, r := range st.GVisor().GetRouteTable() {
		switch r.Destination.String() {
		case "10.5.0.0/24":
			found4 = true
		case "10.0.0.0/8":
			found8 = true
		}
	}
	if !found4 || !found8 {
		t.Errorf("route table %v lacks 10.5.0.0/24 or 10.0.0.0/8", st.GVisor().GetRouteTable())
	}
	for _, p := range []string{"::ffff:10.0.0.0/64", "::ffff:0.0.0.0/0"} {
		if err := st.AddRoute(netip.MustParsePrefix(p), netip.Addr{}, nic); !errors.Is(err, stack.ErrInvalid) {
			t.Errorf("AddRoute(%s) = %v, want ErrInvalid", p, err)
		}
	}
}
