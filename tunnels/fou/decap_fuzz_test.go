package fou

import (
	"testing"

	"github.com/udptunnel/udptunnel/internal/tunneltest"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FuzzDecap feeds arbitrary UDP payloads to a live GUE socket (toFOU
// false) or a live GRE-in-UDP socket (toFOU true), each in its own stack.
// The GUE stack has a device carrying both families and a keyed GRE device
// (GRE in GUE, key 42), the GRE-in-UDP stack a keyed GRE device (key 42),
// all towards the datagrams' source, with their inner stacks attached.
// It checks that nothing panics and
// that every datagram is accounted for exactly once: dropped with a reason
// by the socket, the stack's protocol handler or a device, or delivered by
// a device.
func FuzzDecap(f *testing.F) {
	type target struct {
		ep   gstack.TransportEndpoint
		port uint16
		sock *Socket
		devs []*Device
	}
	stGUE, gue, dIP := voidHost(f, SocketConfig{Type: TypeGUE}, Config{})
	dGIG, err := gue.AddDevice(nil, Config{Proto: ProtoGRE, Remote: dIP.cfg.Remote, HasKey: true, Key: 42})
	if err != nil {
		f.Fatal(err)
	}
	stGRE, gre, dGRE := voidHost(f, SocketConfig{Proto: ProtoGRE}, Config{HasKey: true, Key: 42})
	targets := [2]target{
		{tunneltest.TunnelEndpoint(f, stGUE), GUEPort, gue, []*Device{dIP, dGIG}},
		{tunneltest.TunnelEndpoint(f, stGRE), GREPort, gre, []*Device{dGRE}},
	}
	inner4 := tunnelPayload(SocketConfig{Proto: ProtoIPIP}, Config{}, 8)
	gre4 := tunnelPayload(SocketConfig{Proto: ProtoGRE}, Config{HasKey: true, Key: 42}, 8)

	f.Add(false, []byte{})                                                // empty GUE datagram: truncated
	f.Add(false, tunnelPayload(SocketConfig{Type: TypeGUE}, Config{}, 8)) // GUE variant 0 IPIP: delivered
	f.Add(false, inner4)                                                  // GUE variant 1 IPv4: delivered
	f.Add(false, append([]byte{0x20, 1, 0, 0}, inner4...))                // GUE control message
	f.Add(false, append([]byte{0x1f, 4, 0, 0}, inner4...))                // GUE Hlen overrun
	f.Add(false, append([]byte{0, 47, 0, 0}, gre4...))                    // GRE in GUE, keyed: delivered
	f.Add(false, append([]byte{0, 41, 0, 0}, inner4...))                  // GUE IPv6 carrying IPv4
	f.Add(true, gre4)                                                     // GRE-in-UDP: delivered
	f.Add(true, []byte{0xa0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 42})           // GRE with a checksum, no payload
	f.Add(true, []byte{0x20, 0, 8, 0, 0, 0, 0, 43})                       // GRE with an unknown key

	accounted := func(tg *target) uint64 {
		n := tg.sock.Tunnel().Counters().Stats().TotalDrops()
		for _, p := range handledProtos {
			n += tg.sock.Handler(p).Counters().Stats().TotalDrops()
		}
		for _, d := range tg.devs {
			ds := d.Counters().Stats()
			n += ds.RxPackets + ds.TotalDrops()
		}
		return n
	}
	f.Fuzz(func(t *testing.T, toFOU bool, payload []byte) {
		if len(payload) > tunneltest.MaxFuzzPayload {
			return
		}
		tg := &targets[0]
		if toFOU {
			tg = &targets[1]
		}
		tunneltest.AccountedOnce(t, tg.ep, datagram4(payload, tg.port), func() uint64 { return accounted(tg) }, nil)
	})
}
