package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/udptunnel/udptunnel/e2e"
	"github.com/udptunnel/udptunnel/endpoints/memlink"
)

// demo runs the main job on an embedded default: two in-process hosts, an
// overlay (VXLAN unless -proto says otherwise) over a memlink underlay, ping
// and a hashed TCP transfer across it. It returns the process exit code:
// non-zero on any failure.
func demo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("udptunnel demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.Int64("size", 64<<20, "bytes to move over TCP through the overlay")
	ipv6 := fs.Bool("ipv6", false, "use an IPv6 underlay (the overlay carries IPv4 and IPv6 either way)")
	mtu := fs.Uint("mtu", 1500, "underlay MTU (68..65535)")
	count := fs.Int("count", 5, "pings per direction and family")
	loss := fs.Float64("loss", 0, "underlay loss probability (0..1)")
	dup := fs.Float64("dup", 0, "underlay duplication probability (0..1)")
	reorder := fs.Float64("reorder", 0, "underlay reordering probability (0..1)")
	delay := fs.Duration("delay", 0, "underlay one-way delay")
	jitter := fs.Duration("jitter", 0, "underlay delay jitter")
	seed := fs.Uint64("seed", 1, "seed of the impairment's randomness (runs are repeatable)")
	gso := fs.Bool("gso", false, "segmentation and checksum offload on the wire and the tunnel devices, as a kernel veth and VXLAN run")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long (per protocol)")
	proto := fs.String("proto", "vxlan", "tunnel protocol: "+strings.Join(e2e.Protocols(), ", ")+", or all")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "udptunnel demo: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *mtu > 65535 {
		fmt.Fprintf(stderr, "udptunnel demo: -mtu %d: must be 68..65535\n", *mtu)
		return 2
	}
	if *size <= 0 || *count < 0 {
		fmt.Fprintln(stderr, "udptunnel demo: -size must be positive and -count not negative")
		return 2
	}

	names := []string{*proto}
	if *proto == "all" {
		names = e2e.Protocols()
	}
	cfg := e2e.OverlayConfig{
		IPv6Underlay: *ipv6,
		UnderlayMTU:  uint32(*mtu),
		GSO:          *gso,
		Impairment: memlink.Impairment{
			Loss: *loss, Duplicate: *dup, Reorder: *reorder, Delay: *delay, Jitter: *jitter, Seed: *seed,
		},
	}
	var failed []string
	for i, name := range names {
		var err error
		if cfg.Tunnel, err = e2e.Protocol(name); err != nil {
			fmt.Fprintf(stderr, "udptunnel demo: -proto: %v\n", err)
			return 2
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		ok, err := demoOverlay(name, cfg, demoParams{count: *count, size: *size, timeout: *timeout}, stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "udptunnel demo: %s: %v\n", name, err)
			return 2
		}
		if !ok {
			failed = append(failed, name)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(stdout, "\nFAIL (%s)\n", strings.Join(failed, ", "))
		return 1
	}
	fmt.Fprintln(stdout, "\nOK")
	return 0
}

// demoParams are the traffic parameters of one demo overlay.
type demoParams struct {
	count   int
	size    int64
	timeout time.Duration
}

// demoOverlay builds one overlay of protocol name and runs the demo's
// traffic across it, printing as it goes. It reports whether all traffic
// succeeded; an error means the overlay could not be built.
func demoOverlay(name string, cfg e2e.OverlayConfig, p demoParams, stdout, stderr io.Writer) (bool, error) {
	o, err := e2e.NewOverlay(cfg)
	if err != nil {
		return false, err
	}
	defer o.Close()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()

	a, b := o.A, o.B
	fmt.Fprintf(stdout, "underlay: memlink %v <-> %v, MTU %d\n", a.Outer, b.Outer, cfg.UnderlayMTU)
	fmt.Fprintf(stdout, "overlay:  %s, device %s MTU %d, %v/%v <-> %v/%v\n\n",
		name, a.Tunnel.Name(), a.Tunnel.InnerMTU(), a.Inner4, a.Inner6, b.Inner4, b.Inner6)

	failed := false
	for _, pp := range []struct {
		from, to *e2e.Host
		dst      netip.Addr
	}{{a, b, b.Inner4}, {b, a, a.Inner4}, {a, b, b.Inner6}, {b, a, a.Inner6}} {
		if p.count == 0 {
			break
		}
		r, err := e2e.Ping(ctx, pp.from.Stack, pp.dst, p.count, 2*time.Second)
		fmt.Fprintf(stdout, "ping %s -> %-14v %v\n", pp.from.Name, pp.dst, r)
		if err != nil {
			fmt.Fprintf(stderr, "FAIL: %v\n", err)
			failed = true
		}
	}

	res, err := e2e.TransferTCP(ctx, a.Stack, b.Stack, netip.AddrPortFrom(b.Inner4, 5001), p.size, nil)
	if err != nil {
		fmt.Fprintf(stderr, "FAIL: TCP a -> b: %v\n", err)
		failed = true
	} else {
		fmt.Fprintf(stdout, "\ntcp  a -> %v: %v\n", b.Inner4, res)
	}

	fmt.Fprintln(stdout, "\ncounters:")
	for _, h := range o.Hosts() {
		fmt.Fprintf(stdout, "  %s %-9s %v\n", h.Name, h.Tunnel.Name(), h.Tunnel.Counters().Stats())
		fmt.Fprintf(stdout, "  %s %-9s %v, icmp errors %d\n", h.Name, fmt.Sprintf(":%d", h.TunnelSocket.LocalAddr().Port()),
			h.TunnelSocket.Counters().Stats(), h.TunnelSocket.ICMPErrors())
		fmt.Fprintf(stdout, "  %s %-9s %v\n", h.Name, "underlay", h.Wire.Stats())
	}
	if failed {
		fmt.Fprintf(stdout, "%s: FAIL\n", name)
	}
	return !failed, nil
}
