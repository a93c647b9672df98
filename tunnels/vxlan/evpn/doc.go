// Package evpn is the BGP EVPN control plane of the VXLAN VTEP (RFC 7432,
// RFC 8365): it fills a vxlan.Device's forwarding database, flood list and
// ARP/ND proxy table from BGP, and advertises the MAC addresses that live
// on the userspace side, the way FRR's bgpd and zebra do for a Linux bridge
// over a kernel VXLAN device.
//
// The BGP engine is GoBGP (github.com/osrg/gobgp/v4), run in-process as a
// library; this package only translates between EVPN routes and the VXLAN
// device. It is a package of its own so that an application that imports
// the tunnels does not compile GoBGP.
//
// # Routes
//
// For each bound VNI a [Speaker] originates:
//
//   - one Inclusive Multicast Ethernet Tag route (type 3) with originator
//     = the VTEP address and a PMSI Tunnel attribute of type ingress
//     replication (tunnel ID = the VTEP address, label = the VNI): peers
//     add the VTEP to the VNI's flood list;
//   - one MAC/IP Advertisement route (type 2) per local MAC (the device's
//     own and those added with [Binding.AddLocalMAC]), and one per local
//     MAC and IP address (the device's addresses, and addresses seen in ARP
//     and neighbour discovery the device transmits), label = the VNI.
//
// All carry the route distinguisher router-id:VNI (or the configured one),
// the route targets (AS:VNI by default, as FRR's auto-derivation), the
// BGP encapsulation extended community of type VXLAN (RFC 9012) and, as
// next hop, the VTEP address: FRR floods to the originator in the type-3
// route and sends unicast to the next hop of type-2 routes, so all three
// are kept equal.
//
// A received route is imported into every binding whose import route
// targets it carries. A type-3 route with ingress replication adds its
// originator to the flood list (the FDB's all-zeros entry); a type-2 route
// installs a static FDB entry MAC → next hop and, with an IP address, an
// ARP/ND proxy entry IP → MAC (ARP suppression; the device answers only if
// it was created with vxlan.Config.Proxy). A withdrawal, or a session that
// goes down, removes what the route installed.
//
// MAC mobility (RFC 7432 §15): when several VTEPs advertise the same MAC,
// the route with the highest MAC Mobility sequence number wins, ties broken
// by the lowest VTEP address. A local MAC is advertised with a sequence
// number one above the highest a remote route carries for it; a local MAC
// for which a remote VTEP advertises a higher sequence number, or the same
// one from a lower address, has moved away: its routes are withdrawn until
// it is declared local again (Binding.AddLocalMAC), never just because the
// remote routes went away, as they do when a session drops.
//
// # GoBGP v4.8.0, as met here
//
//   - Route selection options are package globals that every StartBgp
//     writes: Start serialises its own calls, but a speaker that starts
//     while another one in the same process handles updates races on
//     them (same values, a race for the race detector). Run one speaker
//     per process, as the CLI does, or start them before traffic.
//   - GoBGP does MAC mobility of its own: it withdraws a local MAC/IP
//     route when a remote one has a higher sequence number, and checks
//     sequence numbers on withdrawals too. The routes carry the MAC
//     Mobility community even with sequence 0 so that both count alike,
//     and withdrawals carry the highest number.
//   - Withdrawal by UUID walks the whole RIB per UUID; routes are
//     withdrawn by path instead.
//   - A peer's outgoing queue can keep one parked goroutine after the
//     session stops (its cleanup drains without blocking).
//
// # What it is not
//
// Data-plane learning must be off on a bound device (Bind refuses a device
// with vxlan.Config.Learning): the table comes from BGP only. Multihoming
// (Ethernet segments, routes of type 1 and 4), IP prefix routes (type 5),
// symmetric IRB, multicast underlays (PMSI types other than ingress
// replication) and duplicate-MAC freezing are not implemented: such routes
// are counted as ignored.
package evpn
