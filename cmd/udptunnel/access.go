package main

// Access for host applications: the SOCKS5 server, the HTTP CONNECT proxy
// and the port forwards a configuration asks for, all dialing inside the
// overlay, with their counters for /metrics and a graceful shutdown.

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/udptunnel/udptunnel/internal/forward"
	"github.com/udptunnel/udptunnel/internal/httpconnect"
	"github.com/udptunnel/udptunnel/internal/socks5"
)

// access holds the running access components.
type access struct {
	log      *slog.Logger
	socks    *socks5.Server
	socksLn  net.Listener
	http     *httpconnect.Server
	httpLn   net.Listener
	forwards []*forward.Forwarder
	// fwdCfgs are the forwards' configurations, by the same index.
	fwdCfgs []forward.Forward
	cancel  context.CancelFunc
}

// startAccess starts what cfg asks for over n's stack. On error whatever
// started is closed again.
func startAccess(cfg *Config, n *node, log *slog.Logger) (_ *access, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &access{log: log, cancel: cancel}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if s := cfg.SOCKS5; s != nil {
		listen := s.Listen
		if listen == "" {
			listen = "127.0.0.1:1080"
		}
		sc := socks5.Config{Dialer: n.st, UDP: s.UDP == nil || *s.UDP, Logger: log.With("component", "socks5")}
		if s.Username != "" {
			user, pass := s.Username, s.Password
			sc.Auth = func(u, p string) bool { return secretsEqual(u, user) && secretsEqual(p, pass) }
		}
		if a.socks, err = socks5.NewServer(sc); err != nil {
			return nil, fmt.Errorf("socks5: %w", err)
		}
		if a.socksLn, err = net.Listen("tcp", listen); err != nil {
			return nil, fmt.Errorf("socks5.listen: %w", err)
		}
		go a.socks.Serve(a.socksLn)
		log.Info("SOCKS5 listening", "addr", a.socksLn.Addr().String(), "udp_associate", sc.UDP, "auth", sc.Auth != nil)
	}
	if h := cfg.HTTPConnect; h != nil {
		listen := h.Listen
		if listen == "" {
			listen = "127.0.0.1:8080"
		}
		a.http = &httpconnect.Server{Config: httpconnect.Config{Dialer: n.st, Logger: log.With("component", "http_connect")}}
		if h.Username != "" {
			user, pass := h.Username, h.Password
			a.http.Config.Auth = func(u, p string) bool { return secretsEqual(u, user) && secretsEqual(p, pass) }
		}
		if a.httpLn, err = net.Listen("tcp", listen); err != nil {
			return nil, fmt.Errorf("http_connect.listen: %w", err)
		}
		go a.http.Serve(a.httpLn)
		log.Info("HTTP CONNECT proxy listening", "addr", a.httpLn.Addr().String())
	}
	for i, fc := range cfg.Forwards {
		f := forward.Forward{
			Listen:      netip.MustParseAddrPort(fc.Listen),
			Target:      netip.MustParseAddrPort(fc.Target),
			IdleTimeout: fc.IdleTimeout.d(),
			MaxSessions: fc.MaxSessions,
			Logger:      log.With("component", "forward", "index", i),
		}
		if f.Proto, err = forward.ParseProto(fc.Proto); err != nil {
			return nil, fmt.Errorf("forwards[%d].proto: %w", i, err)
		}
		f.Direction = forward.HostToOverlay
		if fc.Direction == "overlay-to-host" {
			f.Direction = forward.OverlayToHost
		}
		fw, err := forward.Start(ctx, n.st, f)
		if err != nil {
			return nil, fmt.Errorf("forwards[%d]: %w", i, err)
		}
		a.forwards = append(a.forwards, fw)
		a.fwdCfgs = append(a.fwdCfgs, f)
		log.Info("forwarding", "proto", fc.Proto, "direction", f.Direction, "listen", fw.Addr().String(), "target", f.Target)
	}
	return a, nil
}

// secretsEqual compares a credential in constant time.
func secretsEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// shutdown stops accepting, lets open connections finish for up to timeout,
// then closes everything.
func (a *access) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	pending := 0
	if a.http != nil {
		pending++
		go func() { a.http.Shutdown(ctx); done <- struct{}{} }()
	}
	for _, f := range a.forwards {
		pending++
		go func() { f.Shutdown(ctx); done <- struct{}{} }()
	}
	if a.socks != nil {
		// The SOCKS server has no Shutdown: stop accepting, then wait
		// for its open connections to end.
		a.socksLn.Close()
		pending++
		go func() {
			for a.socks.Stats().Active > 0 && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			done <- struct{}{}
		}()
	}
	for range pending {
		<-done
	}
	if ctx.Err() != nil {
		a.log.Warn("drain timed out; closing the remaining connections", "timeout", timeout)
	}
	a.close()
}

// close closes everything at once.
func (a *access) close() {
	var errs []error
	if a.socks != nil {
		errs = append(errs, a.socks.Close())
	}
	if a.socksLn != nil {
		a.socksLn.Close()
	}
	if a.http != nil {
		errs = append(errs, a.http.Close())
	}
	if a.httpLn != nil {
		a.httpLn.Close()
	}
	for _, f := range a.forwards {
		errs = append(errs, f.Close())
	}
	a.cancel()
	if err := errors.Join(errs...); err != nil {
		a.log.Debug("closing access", "err", err)
	}
}

// metrics returns the access components' counters for /metrics.
func (a *access) metrics() []extraMetric {
	var out []extraMetric
	counter := func(name, help string, labels prometheus.Labels, v func() uint64) {
		out = append(out, extraMetric{
			desc:  prometheus.NewDesc("udptunnel_"+name, help, nil, labels),
			typ:   prometheus.CounterValue,
			value: func() float64 { return float64(v()) },
		})
	}
	gauge := func(name, help string, labels prometheus.Labels, v func() uint64) {
		out = append(out, extraMetric{
			desc:  prometheus.NewDesc("udptunnel_"+name, help, nil, labels),
			typ:   prometheus.GaugeValue,
			value: func() float64 { return float64(v()) },
		})
	}
	if s := a.socks; s != nil {
		l := prometheus.Labels{"listener": a.socksLn.Addr().String()}
		counter("socks5_connections_total", "SOCKS5 control connections accepted.", l, func() uint64 { return s.Stats().Connections })
		gauge("socks5_connections_active", "SOCKS5 control connections open.", l, func() uint64 { return s.Stats().Active })
		counter("socks5_bytes_up_total", "Bytes from SOCKS5 clients into the overlay.", l, func() uint64 { return s.Stats().BytesUp })
		counter("socks5_bytes_down_total", "Bytes from the overlay to SOCKS5 clients.", l, func() uint64 { return s.Stats().BytesDown })
		counter("socks5_udp_associations_total", "SOCKS5 UDP associations created.", l, func() uint64 { return s.Stats().UDPAssociations })
		counter("socks5_auth_failures_total", "SOCKS5 authentication failures.", l, func() uint64 { return s.Stats().AuthFailures })
	}
	if h := a.http; h != nil {
		l := prometheus.Labels{"listener": a.httpLn.Addr().String()}
		counter("http_connect_tunnels_total", "CONNECT requests answered with 200.", l, func() uint64 { return h.Stats().Tunnels })
		gauge("http_connect_connections_active", "HTTP CONNECT client connections open.", l, func() uint64 { return h.Stats().Active })
		counter("http_connect_bytes_up_total", "Bytes from CONNECT clients into the overlay.", l, func() uint64 { return h.Stats().BytesUp })
		counter("http_connect_bytes_down_total", "Bytes from the overlay to CONNECT clients.", l, func() uint64 { return h.Stats().BytesDown })
	}
	for i, f := range a.forwards {
		// A TCP and a UDP forward may listen on the same port, and a
		// host and an overlay address may look alike.
		c := a.fwdCfgs[i]
		l := prometheus.Labels{"listen": f.Addr().String(), "proto": c.Proto.String(), "direction": c.Direction.String()}
		counter("forward_sessions_total", "Forward connections or UDP sessions created.", l, func() uint64 { return f.Stats().Sessions })
		gauge("forward_sessions_active", "Forward connections or UDP sessions open.", l, func() uint64 { return f.Stats().Active })
		counter("forward_bytes_up_total", "Bytes from forward clients to the target.", l, func() uint64 { return f.Stats().BytesUp })
		counter("forward_bytes_down_total", "Bytes from the target back to forward clients.", l, func() uint64 { return f.Stats().BytesDown })
	}
	return out
}
