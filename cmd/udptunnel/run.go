package main

// `udptunnel run`: the rootless tunnel client. It builds the node a
// configuration file (or the quick-mode flags) describes, opens the access
// listeners for host applications and the admin listener, and runs until
// SIGINT or SIGTERM, then shuts down gracefully: /healthz turns 503,
// listeners close, in-flight connections get ShutdownTimeout to drain, and
// the stack goes with everything in it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/udptunnel/udptunnel/tunnels/vxlan/evpn"
)

// runFlags are the quick mode's flags: one VXLAN interface to one remote
// and a SOCKS5 listener, without a configuration file.
type runFlags struct {
	config                         string
	vni                            uint
	remote, local, address, port   string
	socks5, httpConnect, admin     string
	logLevel, logFormat            string
	pcapOuter, pcapInner, underlay string
}

// runCmd is `udptunnel run`; it returns the exit code.
func runCmd(args []string, stdout, stderr io.Writer) int {
	return runWithSignals(args, stdout, stderr, nil)
}

// runWithSignals is runCmd with a context whose end stands for a signal
// (tests); nil listens for SIGINT and SIGTERM.
func runWithSignals(args []string, stdout, stderr io.Writer, ctx context.Context) int {
	var f runFlags
	fs := flag.NewFlagSet("udptunnel run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "c", "", "configuration file (YAML); without it, the quick-mode flags below describe one VXLAN interface")
	fs.UintVar(&f.vni, "vni", 42, "quick mode: the VXLAN VNI")
	fs.StringVar(&f.remote, "remote", "", "quick mode: the remote VTEP's address (required without -c)")
	fs.StringVar(&f.local, "local", "", "quick mode: this host's underlay address (default: the one that routes to -remote)")
	fs.StringVar(&f.address, "address", "", "quick mode: the inner address, as a prefix (required without -c)")
	fs.StringVar(&f.port, "port", "", "quick mode: the VXLAN UDP port (default 4789)")
	fs.StringVar(&f.socks5, "socks5", "127.0.0.1:1080", "quick mode: SOCKS5 listener (empty: none)")
	fs.StringVar(&f.httpConnect, "http-connect", "", "quick mode: HTTP CONNECT proxy listener (empty: none)")
	fs.StringVar(&f.admin, "admin", "", "admin listener for /metrics and /healthz (empty: none; overrides the file)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides the file)")
	fs.StringVar(&f.logFormat, "log-format", "", "text or json (overrides the file)")
	fs.StringVar(&f.pcapOuter, "pcap-outer", "", "capture the underlay's outer packets to this pcap file (overrides the file)")
	fs.StringVar(&f.pcapInner, "pcap-inner", "", "capture the interfaces' inner packets to this pcap file (overrides the file)")
	fs.StringVar(&f.underlay, "underlay", "", "hostudp or tun (overrides the file)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "udptunnel run: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	cfg, l, err := f.configure(set)
	if err != nil {
		fmt.Fprintf(stderr, "udptunnel run: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		// After the first signal the default handling returns, so that a
		// second Ctrl-C ends a long drain at once.
		go func() { <-ctx.Done(); stop() }()
	}
	if err := serve(ctx, cfg, l, log, stdout); err != nil {
		log.Error("udptunnel run failed", "err", err)
		return 1
	}
	return 0
}

// configure returns the configuration: the file's with the flags that
// were set on top, or the quick mode's.
func (f *runFlags) configure(set map[string]bool) (*Config, *lines, error) {
	var cfg *Config
	var l *lines
	var err error
	if f.config != "" {
		for _, quick := range []string{"vni", "remote", "local", "address", "port", "socks5", "http-connect"} {
			if set[quick] {
				return nil, nil, fmt.Errorf("-%s is a quick-mode flag: put it in %s instead", quick, f.config)
			}
		}
		if cfg, l, err = loadConfig(f.config); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f.config, err)
		}
	} else {
		if f.remote == "" || f.address == "" {
			return nil, nil, errors.New("need -c FILE, or -remote and -address for the quick mode (udptunnel run -h)")
		}
		y := fmt.Sprintf("interfaces:\n  - {type: vxlan, id: %d, remote: %q, addresses: [%q]", f.vni, f.remote, f.address)
		if f.port != "" {
			y += ", port: " + f.port
		}
		y += "}\n"
		if f.local != "" {
			y += fmt.Sprintf("underlay: {address: %q}\n", f.local)
		}
		if f.socks5 != "" {
			y += fmt.Sprintf("socks5: {listen: %q}\n", f.socks5)
		}
		if f.httpConnect != "" {
			y += fmt.Sprintf("http_connect: {listen: %q}\n", f.httpConnect)
		}
		if cfg, l, err = parseConfig([]byte(y)); err != nil {
			// Name the flag, not the generated YAML's key.
			return nil, nil, errors.New(quickFlagNames.Replace(err.Error()))
		}
	}
	over := map[string]*string{"admin": &cfg.Admin.Listen, "log-level": &cfg.Log.Level, "log-format": &cfg.Log.Format,
		"pcap-outer": &cfg.Pcap.Outer, "pcap-inner": &cfg.Pcap.Inner, "underlay": &cfg.Underlay.Type}
	vals := map[string]string{"admin": f.admin, "log-level": f.logLevel, "log-format": f.logFormat,
		"pcap-outer": f.pcapOuter, "pcap-inner": f.pcapInner, "underlay": f.underlay}
	changed := false
	for name, p := range over {
		if set[name] {
			*p, changed = vals[name], true
		}
	}
	if changed {
		if err := cfg.check(l); err != nil {
			return nil, nil, err
		}
	}
	return cfg, l, nil
}

// quickFlagNames renames the generated configuration's keys in errors to
// the quick-mode flags they came from (and drops the generated lines).
var quickFlagNames = strings.NewReplacer(
	"interfaces[0].remote", "-remote", "interfaces[0].addresses[0]", "-address", "interfaces[0].id", "-vni",
	"interfaces[0].port", "-port", "underlay.address", "-local", "socks5.listen", "-socks5",
	"http_connect.listen", "-http-connect", "interfaces[0]", "the quick mode's interface")

// newLogger returns the structured logger cfg asks for, writing to w.
func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.Level]
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve builds and runs the node until ctx ends.
func serve(ctx context.Context, cfg *Config, l *lines, log *slog.Logger, stdout io.Writer) (err error) {
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i](); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	// Build everything once over an in-memory underlay first, as check
	// does: a configuration the protocols refuse starts nothing on the
	// host.
	dry := *cfg
	dry.Pcap = PcapConfig{}
	n, err := buildNode(&dry, l, memUnderlay(cfg), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	err = checkEVPN(&dry, l, n)
	n.close()
	if err != nil {
		return err
	}
	var underlayMetrics []extraMetric
	ul, err := hostUnderlay(cfg, log, &closers, &underlayMetrics)
	if err != nil {
		return err
	}
	n, err = buildNode(cfg, l, ul, log)
	if err != nil {
		return err
	}
	closers = append(closers, n.close)

	if t := cfg.InnerTUN; t != nil {
		if err := innerTUN(t, n, log, &closers); err != nil {
			return fmt.Errorf("inner_tun: %w", err)
		}
	}
	var sp *evpn.Speaker
	if cfg.EVPN != nil {
		// The dry build checked the section; Start and Bind check the
		// values that depend on the real underlay address (the VTEP).
		if sp, err = startEVPN(cfg, l, n, log); err != nil {
			return err
		}
		closers = append(closers, sp.Close)
	}
	acc, err := startAccess(cfg, n, log)
	if err != nil {
		return err
	}
	var healthy atomic.Bool
	healthy.Store(true)
	if cfg.Admin.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Admin.Listen)
		if err != nil {
			acc.close()
			return fmt.Errorf("admin.listen: %w", err)
		}
		routes, paths := map[string]http.Handler{}, "/metrics /healthz"
		if sp != nil {
			routes["/evpn"], paths = evpnHandler(sp), paths+" /evpn"
		}
		srv := &http.Server{Handler: adminHandler(newCollector(n.metricSources(), slices.Concat(acc.metrics(), evpnMetrics(sp), underlayMetrics)), &healthy, routes), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		closers = append(closers, srv.Close)
		log.Info("admin listening", "addr", ln.Addr().String(), "paths", paths)
	}
	fmt.Fprintf(stdout, "udptunnel running: underlay %v, %d interface(s)\n", n.local, len(n.ifaces))
	<-ctx.Done()

	timeout := cfg.ShutdownTimeout.d()
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	log.Info("shutting down", "drain", timeout)
	healthy.Store(false)
	acc.shutdown(timeout)
	return nil
}
