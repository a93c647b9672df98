// Command udptunnel is the userspace UDP tunnel stack's command-line tool.
//
//	udptunnel demo [flags]   two in-process hosts joined by a VXLAN overlay:
//	                         ping across it, move data over TCP with a hash
//	                         check, print RTT, throughput and counters
//	udptunnel run -c FILE    the rootless tunnel client: the underlay (host
//	                         UDP sockets, or a TUN), tunnel interfaces of any
//	                         protocol, SOCKS5, HTTP CONNECT and port forwards
//	                         into the overlay, /metrics and /healthz
//	udptunnel check -c FILE  validate a configuration file: every value,
//	                         and every interface built in memory
//	udptunnel version        print the version
//
// The demo needs no root and no configuration: everything runs inside the
// process, on gVisor's netstack over an in-memory wire.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "demo":
		return demo(args[1:], stdout, stderr)
	case "check":
		return check(args[1:], stdout, stderr)
	case "run":
		return runCmd(args[1:], stdout, stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "udptunnel", version())
		return 0
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "udptunnel: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: udptunnel <command> [flags]

commands:
  demo      run an in-process VXLAN overlay between two hosts and check it
            (no root, no configuration; "udptunnel demo -h" lists its flags)
  run       run the tunnel client: -c FILE, or the quick mode's flags
            (-remote ADDR -address PREFIX [-vni N] [-socks5 ADDR]);
            "udptunnel run -h" lists them
  check     validate a configuration file (-c FILE) without starting anything
  status    show a running udptunnel's BGP EVPN sessions and routes
            (-admin ADDR:PORT of its admin listener, -json)
  version   print the version
`)
}

// version returns the module version the binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
