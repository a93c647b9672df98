package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// Example_embedding builds by hand what e2e.NewOverlay builds: two stacks
// on an in-memory wire, a VXLAN device on each, and a ping across the
// overlay. It is the README's embedding example.
func Example_embedding() {
	wireA, wireB, _ := memlink.NewPair(memlink.Options{MTU: 1500})
	var stacks [2]*stack.Stack
	for i, wire := range []*memlink.Endpoint{wireA, wireB} {
		st := stack.New(stack.Options{})
		defer st.Close()
		stacks[i] = st

		// The underlay: a NIC on the wire with an outer address.
		nic, _ := st.AddNIC(wire, stack.NICOptions{Name: "underlay"})
		st.AddAddress(nic, netip.MustParsePrefix(fmt.Sprintf("10.99.0.%d/24", i+1)))

		// The overlay: a VXLAN socket on :4789 and a device for VNI 42
		// whose default remote is the other host.
		sock, err := vxlan.OpenSocket(st, vxlan.SocketConfig{})
		if err != nil {
			panic(err)
		}
		dev, err := sock.AddDevice(nil, vxlan.Config{
			VNI:     42,
			Remotes: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("10.99.0.%d", 2-i))},
		})
		if err != nil {
			panic(err)
		}
		st.AddAddress(dev.NIC(), netip.MustParsePrefix(fmt.Sprintf("192.168.42.%d/24", i+1)))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := stacks[0].Ping(ctx, netip.MustParseAddr("192.168.42.2"), 1, 56); err != nil {
		fmt.Println("ping failed:", err)
		return
	}
	fmt.Println("ping through VXLAN: ok")
	// Output: ping through VXLAN: ok
}
