package memlink_test

import (
	"fmt"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// This example joins two stacks with an Ethernet pair and sends a UDP
// datagram across it; ARP resolves through the ethernet.New wrappers.
func ExampleNewPair() {
	a, b, err := memlink.NewPair(memlink.Options{Ethernet: true, Sync: true})
	if err != nil {
		panic(err)
	}
	newStack := func(ep *memlink.Endpoint, addr tcpip.Address) *stack.Stack {
		s := stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{udp.NewProtocol},
		})
		if err := s.CreateNIC(1, ethernet.New(ep)); err != nil {
			panic(err)
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          ipv4.ProtocolNumber,
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24},
		}
		if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			panic(err)
		}
		s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
		return s
	}
	addrA, addrB := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	sa, sb := newStack(a, addrA), newStack(b, addrB)
	// Close the wire first, then the stacks: see the package doc.
	defer sb.Destroy()
	defer sa.Destroy()
	defer b.Close()
	defer a.Close()

	rx, err := gonet.DialUDP(sb, &tcpip.FullAddress{Addr: addrB, Port: 53}, nil, ipv4.ProtocolNumber)
	if err != nil {
		panic(err)
	}
	defer rx.Close()
	tx, err := gonet.DialUDP(sa, nil, &tcpip.FullAddress{Addr: addrB, Port: 53}, ipv4.ProtocolNumber)
	if err != nil {
		panic(err)
	}
	defer tx.Close()
	if _, err := tx.Write([]byte("hello")); err != nil {
		panic(err)
	}
	buf := make([]byte, 64)
	n, _, err := rx.ReadFrom(buf)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s; %d packets on the wire\n", buf[:n], a.Stats().TxPackets)
	// Output: hello; 2 packets on the wire
}
