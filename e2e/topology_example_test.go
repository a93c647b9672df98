package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
)

// A VXLAN tunnel between two hosts routed through a router whose second
// wire has a smaller MTU, with a UDP echo across it.
func ExampleTopology() {
	t := e2e.NewTopology()
	a, r, b := t.Host("a"), t.Router("r"), t.Host("b")
	ar := t.Wire(a, r, e2e.WireOptions{MTU: 1500})
	rb := t.Wire(r, b, e2e.WireOptions{MTU: 1400})
	t.Address(a, ar, netip.MustParsePrefix("10.1.0.1/24"))
	t.Address(r, ar, netip.MustParsePrefix("10.1.0.254/24"))
	t.Address(r, rb, netip.MustParsePrefix("10.2.0.254/24"))
	t.Address(b, rb, netip.MustParsePrefix("10.2.0.1/24"))
	t.Route(a, netip.MustParsePrefix("10.2.0.0/24"), netip.MustParseAddr("10.1.0.254"))
	t.Route(b, netip.MustParsePrefix("10.1.0.0/24"), netip.MustParseAddr("10.2.0.254"))
	vxlan := t.Tunnel(a, b, e2e.VXLAN, e2e.TunnelOptions{
		OuterA: netip.MustParseAddr("10.1.0.1"), OuterB: netip.MustParseAddr("10.2.0.1"),
		InnerA: []netip.Prefix{netip.MustParsePrefix("192.168.42.1/24")},
		InnerB: []netip.Prefix{netip.MustParsePrefix("192.168.42.2/24")},
	})
	if err := t.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()

	dst := netip.AddrPortFrom(vxlan.B.Inner4, 7)
	echo, err := e2e.UDPEcho(b.Stack, dst)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer echo.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e2e.RequestResponse(ctx, a.Stack, dst, 10, 1200, time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d of %d replies; B's device MTU %d (1400-byte wire), A's %d\n",
		res.Received, res.Sent, vxlan.B.Tunnel.InnerMTU(), vxlan.A.Tunnel.InnerMTU())
	// Output: 10 of 10 replies; B's device MTU 1350 (1400-byte wire), A's 1450
}
