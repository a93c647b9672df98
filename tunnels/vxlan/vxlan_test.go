package vxlan_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
	"github.com/udptunnel/udptunnel/tunnels/vxlan"
)

// host is one in-process VTEP: a stack with an underlay NIC, a VXLAN socket
// and one device.
type host struct {
	st    *stack.Stack
	under stack.NICID
	sock  *vxlan.Socket
	dev   *vxlan.Device
	outer netip.Addr
	inner []netip.Prefix
}

type topo struct {
	outer4 bool // IPv4 underlay
	mtu    uint32
	opts   memlink.Options
}

// pair builds two hosts joined by a memlink pair, each with VNI 42 pointing
// at the other. Addresses exist only inside these in-process stacks.
func pair(t testing.TB, tp topo, cfg func(i int, c *vxlan.Config)) [2]*host {
	t.Helper()
	if tp.mtu == 0 {
		tp.mtu = 1500
	}
	tp.opts.MTU = tp.mtu
	a, b, err := memlink.NewPair(tp.opts)
	if err != nil {
		t.Fatal(err)
	}
	outer := [2]netip.Prefix{netip.MustParsePrefix("fd00::1/64"), netip.MustParsePrefix("fd00::2/64")}
	if tp.outer4 {
		outer = [2]netip.Prefix{netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("10.99.0.2/24")}
	}
	var hs [2]*host
	for i, ep := range []*memlink.Endpoint{a, b} {
		st := stack.New(stack.Options{})
		t.Cleanup(st.Close)
		nic, err := st.AddNIC(ep, stack.NICOptions{Name: "underlay"})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.AddAddress(nic, outer[i]); err != nil {
			t.Fatal(err)
		}
		sock, err := vxlan.OpenSocket(st, vxlan.SocketConfig{})
		if err != nil {
			t.Fatal(err)
		}
		c := vxlan.Config{VNI: 42, Remotes: []netip.Addr{outer[1-i].Addr()}, UnderlayMTU: tp.mtu}
		if cfg != nil {
			cfg(i, &c)
		}
		dev, err := sock.AddDevice(nil, c)
		if err != nil {
			t.Fatal(err)
		}
		h := &host{st: st, under: nic, sock: sock, dev: dev, outer: outer[i].Addr()}
		for _, p := range []string{"192.168.42.%d/24", "fd42::%d/64"} {
			pfx := netip.MustParsePrefix(sprintf(p, i+1))
			if err := st.AddAddress(dev.NIC(), pfx); err != nil {
				t.Fatal(err)
			}
			h.inner = append(h.inner, pfx)
		}
		hs[i] = h
	}
	return hs
}

func sprintf(f string, i int) string {
	return string(bytes.ReplaceAll([]byte(f), []byte("%d"), []byte{byte('0' + i)}))
}

func ping(t testing.TB, h *host, dst netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.st.Ping(ctx, dst, 1, 56); err != nil {
		t.Fatalf("ping %v: %v", dst, err)
	}
}

// transfer moves n bytes over TCP from a to b's addr and checks the hash.
func transfer(t testing.TB, a, b *host, dst netip.Addr, n int) {
	t.Helper()
	ln, err := b.st.ListenTCP(netip.AddrPortFrom(dst, 5001))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := a.st.DialTCP(ctx, netip.AddrPortFrom(dst, 5001))
	if err != nil {
		t.Fatalf("dial %v: %v", dst, err)
	}
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := sha256.Sum256(data)
	select {
	case sum := <-got:
		if sum != want {
			t.Fatalf("TCP transfer of %d bytes to %v: hash mismatch", n, dst)
		}
	case <-ctx.Done():
		t.Fatalf("TCP transfer of %d bytes to %v: timed out", n, dst)
	}
}

func TestOverlayEndToEnd(t *testing.T) {
	for _, outer4 := range []bool{true, false} {
		for _, inner := range []int{0, 1} { // 0: IPv4, 1: IPv6
			name := map[bool]string{true: "outer4", false: "outer6"}[outer4] + map[int]string{0: "/inner4", 1: "/inner6"}[inner]
			t.Run(name, func(t *testing.T) {
				hs := pair(t, topo{outer4: outer4}, nil)
				ping(t, hs[0], hs[1].inner[inner].Addr())
				ping(t, hs[1], hs[0].inner[inner].Addr())
				transfer(t, hs[0], hs[1], hs[1].inner[inner].Addr(), 4<<20)
				st := hs[1].dev.Counters().Stats()
				if st.RxPackets == 0 || st.TxPackets == 0 {
					t.Errorf("device counters did not move: %v", st)
				}
				if d := st.TotalDrops(); d != 0 {
					t.Errorf("device drops: %v", st)
				}
			})
		}
	}
}
