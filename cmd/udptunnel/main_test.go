package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/udptunnel/udptunnel/e2e"
)

// allProtocolsOverlays returns the overlay line that demo -proto all must
// print for every protocol.
func allProtocolsOverlays() []string {
	var want []string
	for _, name := range e2e.Protocols() {
		want = append(want, "overlay:  "+name+", device ")
	}
	return want
}

func TestDemo(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout
		wantErr  string   // substring of stderr
	}{
		{"ipv4 underlay", []string{"demo", "-size", "2097152", "-count", "2"}, 0,
			[]string{"ping a -> 192.168.42.2", "ping b -> fd00:42::1", "2 sent, 2 received", "tcp  a -> 192.168.42.2: 2097152 bytes", "(match)", "a vxlan42", "b :4789", "\nOK\n"}, ""},
		{"ipv6 underlay with gso", []string{"demo", "-ipv6", "-gso", "-size", "2097152", "-count", "1"}, 0,
			[]string{"underlay: memlink fd00:99::1 <-> fd00:99::2", "(match)", "\nOK\n"}, ""},
		{"impaired wire", []string{"demo", "-loss", "0.02", "-reorder", "0.02", "-size", "1048576", "-count", "3"}, 0,
			[]string{"(match)", "\nOK\n"}, ""},
		{"every protocol", []string{"demo", "-proto", "all", "-size", "1048576", "-count", "1"}, 0,
			append(allProtocolsOverlays(), "\nOK\n"), ""},
		{"unknown protocol", []string{"demo", "-proto", "nope"}, 2, nil, `-proto: unknown protocol "nope" (have bareudp, fou, geneve`},
		{"bad mtu", []string{"demo", "-mtu", "20"}, 2, nil, "MTU 20"},
		{"bad loss", []string{"demo", "-loss", "2"}, 2, nil, "Impairment.Loss"},
		{"stray argument", []string{"demo", "extra"}, 2, nil, `unexpected argument "extra"`},
		{"unknown command", []string{"frobnicate"}, 2, nil, `unknown command "frobnicate"`},
		{"no command", nil, 2, nil, "usage: udptunnel"},
		{"run without a config", []string{"run"}, 2, nil, "need -c FILE, or -remote and -address"},
		{"run with a bad remote", []string{"run", "-remote", "10.0.0", "-address", "10.1.0.1/24"}, 2, nil, `-remote: "10.0.0"`},
		{"run with a bad address", []string{"run", "-remote", "10.0.0.1", "-address", "10.1.0.1"}, 2, nil, `-address: "10.1.0.1"`},
		{"run with a bad vni", []string{"run", "-remote", "10.0.0.1", "-address", "10.1.0.1/24", "-vni", "16777216", "-local", "10.0.0.2", "-socks5", ""}, 1, nil, "vni 16777216"},
		{"run with quick flags and a file", []string{"run", "-c", "x.yaml", "-vni", "7"}, 2, nil, "-vni is a quick-mode flag"},
		{"run with a missing file", []string{"run", "-c", "/nonexistent.yaml"}, 2, nil, "/nonexistent.yaml"},
		{"run with a bad log level", []string{"run", "-remote", "10.0.0.1", "-address", "10.1.0.1/24", "-log-level", "loud"}, 2, nil, "log.level"},
		{"check without a file", []string{"check"}, 2, nil, "usage: udptunnel check -c FILE"},
		{"version", []string{"version"}, 0, []string{"udptunnel "}, ""},
		{"demo help", []string{"demo", "-h"}, 0, nil, "-size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, stderr.String())
			}
		})
	}
}
