// Package tunneltest holds the test support the tunnel packages share:
//
//   - hosts: Pair (two stacks on a memlink wire), NewStack (a stack with an
//     underlay NIC), VoidStack (an underlay that leads nowhere, for
//     benchmarks and allocation guards);
//   - packets: Datagram4, Received, TunnelEndpoint, Receive, Transmit,
//     InnerIPv4/InnerFrame, OuterDatagram, SendUDP/SendUDPFrom, and the
//     pcap helpers (WritePcap, ParsePcap, ReadPcap, ReadUDP);
//   - measuring: Count (a counting dispatcher), OuterWrite (gVisor's bare
//     outer write as a baseline), Loop, SkipIfRace, AccountedOnce;
//   - checking: Counts/Since/CheckCounts, Eventually, and the Close checks
//     (CloseTwice, NoNIC, PortFree, OuterStackClose).
//
// It is imported from _test.go files only.
package tunneltest
