package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/udptunnel/udptunnel/endpoints/memlink"
	"github.com/udptunnel/udptunnel/stack"
)

// check validates a configuration file without starting anything: the file
// is decoded and checked, then every interface is built in a stack over an
// in-memory underlay, so that each protocol's own checks run too; nothing
// on the host is touched. It returns the exit code.
func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("udptunnel check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *file == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: udptunnel check -c FILE")
		return 2
	}
	cfg, l, err := loadConfig(*file)
	if err != nil {
		fmt.Fprintf(stderr, "udptunnel check: %s: %v\n", *file, err)
		return 1
	}
	cfg.Pcap = PcapConfig{} // check creates no files
	n, err := buildNode(cfg, l, memUnderlay(cfg), slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "udptunnel check: %s: %v\n", *file, err)
		return 1
	}
	if err := checkEVPN(cfg, l, n); err != nil {
		n.close()
		fmt.Fprintf(stderr, "udptunnel check: %s: %v\n", *file, err)
		return 1
	}
	for _, f := range n.ifaces {
		fmt.Fprintf(stdout, "%-12s %-8s mtu %d\n", f.name, f.proto, f.dev.InnerMTU())
	}
	n.close()
	fmt.Fprintf(stdout, "%s: OK\n", *file)
	return 0
}

// memUnderlay returns an underlay on an in-memory wire with the configured
// underlay address, or a documentation address of the first remote's
// family: for building a configuration without the host.
func memUnderlay(cfg *Config) underlayFunc {
	return func(st *stack.Stack) (stack.NICID, netip.Addr, error) {
		w, _, err := memlink.NewPair(memlink.Options{MTU: max(cfg.Underlay.MTU, 1500)})
		if err != nil {
			return 0, netip.Addr{}, err
		}
		nic, err := st.AddNIC(w, stack.NICOptions{Name: "underlay"})
		if err != nil {
			return 0, netip.Addr{}, err
		}
		p := netip.MustParsePrefix("192.0.2.1/24")
		if a, err := netip.ParseAddr(cfg.Underlay.Address); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		} else if q, err := netip.ParsePrefix(cfg.Underlay.Address); err == nil {
			p = q
		} else if len(cfg.Interfaces) > 0 && addr(cfg.Interfaces[0].Remote).Is6() {
			p = netip.MustParsePrefix("2001:db8::1/64")
		}
		if err := st.AddAddress(nic, p); err != nil {
			return 0, netip.Addr{}, err
		}
		return nic, p.Addr(), nil
	}
}
