package memlink_test

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// benchCases are the wires the benchmarks run over.
var benchCases = []struct {
	name string
	opts memlink.Options
}{
	{"mtu=1500/sync", memlink.Options{MTU: 1500, Sync: true}},
	{"mtu=1500/async", memlink.Options{MTU: 1500}},
	{"mtu=65000/sync", memlink.Options{MTU: 65000, Sync: true}},
	{"mtu=65000/async", memlink.Options{MTU: 65000}},
}

// BenchmarkUDP measures the rate of MTU-sized UDP datagrams between two
// stacks over a raw pair. ns/op is the sender's cost per datagram; pkts/s
// counts the datagrams the receiving application read, lost% those it did
// not, and queuefull% those of them dropped by a full receive queue (the
// rest overflowed the socket buffer). An asynchronous wire lets the sender
// outrun the receiving stack, as a real one does.
func BenchmarkUDP(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			a, h2, _, eb := pairedHosts(b, bc.opts)
			ca := udpSocket(b, a, ipv4.ProtocolNumber, a.v4, 1000)
			cb := udpSocket(b, h2, ipv4.ProtocolNumber, h2.v4, 2000)
			to := udpAddr(h2.v4, 2000)
			payload := make([]byte, int(bc.opts.MTU)-header.IPv4MinimumSize-header.UDPMinimumSize)

			var received atomic.Int64
			go func() {
				buf := make([]byte, len(payload))
				for {
					if _, _, err := cb.ReadFrom(buf); err != nil {
						return
					}
					received.Add(1)
				}
			}()

			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for range b.N {
				if _, err := ca.WriteTo(payload, to); err != nil {
					b.Fatalf("WriteTo: %v", err)
				}
			}
			// Wait for the receiver to catch up, or to stop making progress.
			for last := int64(-1); ; time.Sleep(time.Millisecond) {
				n := received.Load()
				if n >= int64(b.N) || n == last {
					break
				}
				last = n
			}
			b.StopTimer()
			got := received.Load()
			cb.Close()
			b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "pkts/s")
			b.ReportMetric(100*float64(int64(b.N)-got)/float64(b.N), "lost%")
			b.ReportMetric(100*float64(eb.Stats().Dropped.QueueFull)/float64(b.N), "queuefull%")
		})
	}
}

// BenchmarkTCP measures TCP throughput between two stacks over a raw pair;
// pkts/s counts the packets the sending end put on the wire.
func BenchmarkTCP(b *testing.B) {
	const chunk = 64 << 10
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			a, h2, ea, _ := pairedHosts(b, bc.opts)
			dst := tcpip.FullAddress{Addr: h2.v4, Port: 8080}
			ln, err := gonet.ListenTCP(h2.s, dst, ipv4.ProtocolNumber)
			if err != nil {
				b.Fatalf("ListenTCP: %v", err)
			}
			defer ln.Close()
			done := make(chan int64, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- -1
					return
				}
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				done <- n
			}()
			c, err := gonet.DialTCP(a.s, dst, ipv4.ProtocolNumber)
			if err != nil {
				b.Fatalf("DialTCP: %v", err)
			}
			buf := make([]byte, chunk)
			before := ea.Stats().TxPackets

			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatalf("Write: %v", err)
				}
			}
			c.Close()
			n := <-done
			b.StopTimer()
			if want := int64(b.N) * chunk; n != want {
				b.Fatalf("received %d bytes, want %d", n, want)
			}
			b.ReportMetric(float64(ea.Stats().TxPackets-before)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}
