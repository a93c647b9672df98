package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

const goodConfig = `
log: {level: debug, format: json}
admin: {listen: 127.0.0.1:9090}
underlay: {type: hostudp, address: 10.201.0.1}
interfaces:
  - name: vx42
    type: vxlan
    id: 42
    remote: 10.201.0.2
    addresses: [192.168.42.1/24, fd00:42::1/64]
    routes: [{to: 10.0.0.0/8, via: 192.168.42.254}]
    vxlan:
      learning: true
      ageing: 5m
      fdb: [{mac: "02:00:00:00:00:02", remote: 10.201.0.3}]
  - type: l2tp
    id: 7
    remote: 10.201.0.2
    addresses: [192.168.7.1/24]
    l2tp: {cookie: "c00c1e42", seq: both, l2spec: default}
socks5: {listen: 127.0.0.1:1080}
forwards:
  - {proto: tcp, listen: 127.0.0.1:8081, target: 192.168.42.2:80}
shutdown_timeout: 3s
`

func TestParseConfig(t *testing.T) {
	cfg, _, err := parseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Interfaces) != 2 || *cfg.Interfaces[0].ID != 42 || !cfg.Interfaces[0].VXLAN.Learning || cfg.Interfaces[1].L2TP.Seq != "both" {
		t.Errorf("decoded %+v", cfg)
	}
}

// TestConfigErrors checks that every bad value is refused with an error that
// names its key and line.
func TestConfigErrors(t *testing.T) {
	base := "underlay: {address: 10.201.0.1}\ninterfaces:\n  - {type: vxlan, id: 42, remote: 10.201.0.2, addresses: [192.168.42.1/24]}\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown top-level key", base + "sox5: {}\n", []string{"line 4: sox5: unknown key"}},
		{"unknown nested key", "underlay: {adress: 1.2.3.4}\n", []string{"line 1: underlay.adress: unknown key"}},
		{"unknown keys in a list", "interfaces:\n  - {type: vxlan, vni: 4}\n  - {type: vxlan, vxlan: {fdb: [{mac: 02:00:00:00:00:01, via: x}]}}\n",
			[]string{"line 2: interfaces[0].vni: unknown key", "line 3: interfaces[1].vxlan.fdb[0].via: unknown key"}},
		{"bad duration", base + "shutdown_timeout: soon\n", []string{"line 4: shutdown_timeout", `"soon" is not a duration`}},
		{"bad nested duration", base + "forwards: [{proto: udp, idle_timeout: -5s}]\n", []string{"line 4: forwards[0].idle_timeout", `"-5s" is not a duration`}},
		{"wrong scalar type", "interfaces:\n  - {type: vxlan, id: abc, mtu: 1400}\n", []string{"line 2: interfaces[0].id: cannot unmarshal", "`abc`"}},
		{"long wrong value", "interfaces:\n  - {type: vxlan, id: 1, mtu: lotsandlotsofbytes}\n", []string{"line 2: interfaces[0].mtu: cannot unmarshal"}},
		{"map for a list", "interfaces:\n  - {type: vxlan, remote: [x], vxlan: {fdb: {}}}\n",
			[]string{"line 2: interfaces[0].remote: cannot unmarshal !!seq", "line 2: interfaces[0].vxlan.fdb: cannot unmarshal !!map"}},
		{"bad log level", base + "log: {level: loud}\n", []string{"line 4: log.level", `"loud"`}},
		{"bad admin", base + "admin: {listen: localhost}\n", []string{"line 4: admin.listen"}},
		{"bad underlay type", "underlay: {type: carrier-pigeon}\ninterfaces: []\n", []string{"line 1: underlay.type", "hostudp or tun"}},
		{"bad underlay address", "underlay: {address: 10.201.0}\n", []string{"line 1: underlay.address"}},
		{"tun without prefix", "underlay: {type: tun, address: 10.201.0.1}\n", []string{"underlay.address", "prefix"}},
		{"bad mtu", "underlay: {mtu: 100}\n", []string{"underlay.mtu", "576..65535"}},
		{"offload on tun", "underlay: {type: tun, address: 10.202.0.1/24, offload: true}\n", []string{"underlay.offload", "hostudp"}},
		{"offload with geneve", "underlay: {offload: true}\ninterfaces:\n  - {type: geneve, id: 1, remote: 10.0.0.1, addresses: [10.1.0.1/24]}\n", []string{"line 1: underlay.offload", "interfaces[0] is geneve"}},
		{"offload with pcap.outer", strings.Replace(base, "underlay: {", "underlay: {offload: true, ", 1) + "pcap: {outer: o.pcap}\n", []string{"underlay.offload", "pcap.outer"}},
		{"offload with inner_tun", strings.Replace(base, "underlay: {", "underlay: {offload: true, ", 1) + "inner_tun: {address: 10.99.0.1/30}\n", []string{"underlay.offload", "inner_tun"}},
		{"no interfaces", "underlay: {address: 10.201.0.1}\n", []string{"interfaces: at least one"}},
		{"bad type", "interfaces:\n  - {type: ppp}\n", []string{"line 2: interfaces[0].type", `"ppp"`}},
		{"no id", "interfaces:\n  - {type: vxlan, remote: 10.0.0.1, addresses: [10.1.0.1/24]}\n", []string{"interfaces[0].id", "needs an id"}},
		{"no remote", "interfaces:\n  - {type: geneve, id: 1, addresses: [10.1.0.1/24]}\n", []string{"interfaces[0].remote"}},
		{"bad remote", "interfaces:\n  - {type: vxlan, id: 1, remote: nowhere, addresses: [10.1.0.1/24]}\n", []string{"interfaces[0].remote", `"nowhere"`}},
		{"bad address", "interfaces:\n  - {type: vxlan, id: 1, remote: 10.0.0.1, addresses: [10.1.0.1]}\n", []string{"interfaces[0].addresses[0]", "prefix"}},
		{"bad route", "interfaces:\n  - {type: vxlan, id: 1, remote: 10.0.0.1, addresses: [10.1.0.1/24], routes: [{to: 10.9.0.0}]}\n", []string{"interfaces[0].routes[0].to"}},
		{"foreign section", "interfaces:\n  - {type: vxlan, id: 1, remote: 10.0.0.1, addresses: [10.1.0.1/24], l2tp: {}}\n", []string{"interfaces[0].l2tp", "does not belong"}},
		{"bad fdb mac", "interfaces:\n  - type: vxlan\n    id: 1\n    remote: 10.0.0.1\n    addresses: [10.1.0.1/24]\n    vxlan: {fdb: [{mac: 02:00, remote: 10.0.0.2}]}\n", []string{"line 6: interfaces[0].vxlan.fdb[0].mac"}},
		{"bad cookie", "interfaces:\n  - {type: l2tp, id: 1, remote: 10.0.0.1, addresses: [10.1.0.1/24], l2tp: {cookie: abc}}\n", []string{"interfaces[0].l2tp.cookie", "4 or 8 bytes"}},
		{"bad seq", "interfaces:\n  - {type: l2tp, id: 1, remote: 10.0.0.1, addresses: [10.1.0.1/24], l2tp: {seq: always}}\n", []string{"interfaces[0].l2tp.seq"}},
		{"gtpu without sessions", "interfaces:\n  - {type: gtpu, addresses: [10.1.0.1/24]}\n", []string{"interfaces[0].gtpu", "sessions"}},
		{"bad fou proto", "interfaces:\n  - {type: fou, remote: 10.0.0.1, addresses: [10.1.0.1/24], fou: {proto: mpls}}\n", []string{"interfaces[0].fou.proto"}},
		{"duplicate name", "interfaces:\n  - {name: t, type: gue, remote: 10.0.0.1, addresses: [10.1.0.1/24]}\n  - {name: t, type: gue, remote: 10.0.0.2, addresses: [10.2.0.1/24]}\n", []string{"line 3: interfaces[1].name", "interfaces[0]"}},
		{"bad socks5", base + "socks5: {listen: 1080, username: u}\n", []string{"socks5.listen", "socks5.username"}},
		{"http_connect user without password", base + "http_connect: {username: u}\n", []string{"http_connect.username", "go together"}},
		{"bad forward", base + "forwards: [{proto: sctp, direction: sideways, listen: x, target: y}]\n", []string{"forwards[0].proto", "forwards[0].direction", "forwards[0].listen", "forwards[0].target"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestCheck runs `udptunnel check` on a configuration with one interface of
// every protocol, then on ones that only the protocol packages refuse: the
// error must name the interface and its line.
func TestCheck(t *testing.T) {
	good := `underlay: {address: 10.201.0.1}
interfaces:
  - {type: vxlan, id: 42, remote: 10.201.0.2, addresses: [192.168.42.1/24]}
  - {type: geneve, id: 43, remote: 10.201.0.2, addresses: [192.168.43.1/24], geneve: {l3: true}}
  - {type: l2tp, id: 44, remote: 10.201.0.2, addresses: [192.168.44.1/24], l2tp: {cookie: c00c1e42, seq: both, l2spec: default}}
  - {type: gtpu, remote: 10.201.0.2, addresses: [192.168.45.1/24], gtpu: {sessions: [{local_teid: 1, remote_teid: 2, ue4: 192.168.45.2}]}}
  - {type: fou, id: 46, remote: 10.201.0.2, addresses: [192.168.46.1/24]}
  - {type: gue, remote: 10.201.0.3, addresses: [192.168.47.1/24]}
  - {type: bareudp, remote: 10.201.0.4, port: 6636, addresses: [192.168.48.1/24]}
  - {type: mplsudp, id: 1049, remote: 10.201.0.2, addresses: [192.168.49.1/24]}
`
	runCheckCases(t, []checkCase{
		{"every protocol", good, 0, "OK"},
		{"vni too large", good + "  - {type: vxlan, id: 16777216, remote: 10.201.0.2, addresses: [192.168.50.1/24]}\n", 1, "line 11: interfaces[8]: vni 16777216"},
		{"duplicate vni", good + "  - {type: vxlan, id: 42, remote: 10.201.0.9, addresses: [192.168.50.1/24]}\n", 1, "line 11: interfaces[8]"},
		{"seq without sublayer", "interfaces:\n  - {type: l2tp, id: 1, remote: 10.0.0.1, addresses: [10.1.0.1/24], l2tp: {seq: both}}\n", 1, "line 2: interfaces[0]: seq both"},
		{"l2tp sessions to two remotes in one tunnel", "underlay: {address: 10.201.0.1}\ninterfaces:\n  - {type: l2tp, id: 1, remote: 10.201.0.2, addresses: [10.1.0.1/24]}\n  - {type: l2tp, id: 2, remote: 10.201.0.3, addresses: [10.2.0.1/24]}\n", 1, "line 4: interfaces[1]: l2tp tunnel_id 1"},
		{"l2tp sessions to one remote in one tunnel", "underlay: {address: 10.201.0.1}\ninterfaces:\n  - {type: l2tp, id: 1, remote: 10.201.0.2, addresses: [10.1.0.1/24]}\n  - {type: l2tp, id: 2, remote: 10.201.0.2, addresses: [10.2.0.1/24]}\n", 0, "OK"},
		{"l2tp tunnels to two remotes", "underlay: {address: 10.201.0.1}\ninterfaces:\n  - {type: l2tp, id: 1, remote: 10.201.0.2, addresses: [10.1.0.1/24]}\n  - {type: l2tp, id: 2, remote: 10.201.0.3, addresses: [10.2.0.1/24], l2tp: {tunnel_id: 2}}\n", 0, "OK"},
		{"one port given and defaulted", "underlay: {address: 10.201.0.1}\ninterfaces:\n" +
			"  - {type: vxlan, id: 1, remote: 10.201.0.2, addresses: [10.1.0.1/24]}\n  - {type: vxlan, id: 2, port: 4789, remote: 10.201.0.3, addresses: [10.2.0.1/24]}\n" +
			"  - {type: geneve, id: 3, remote: 10.201.0.2, addresses: [10.3.0.1/24]}\n  - {type: geneve, id: 4, port: 6081, remote: 10.201.0.3, addresses: [10.4.0.1/24]}\n" +
			"  - {type: gue, remote: 10.201.0.2, addresses: [10.5.0.1/24]}\n  - {type: gue, port: 6080, remote: 10.201.0.3, addresses: [10.6.0.1/24]}\n" +
			"  - {type: fou, id: 7, remote: 10.201.0.2, addresses: [10.7.0.1/24]}\n  - {type: fou, id: 8, port: 4754, remote: 10.201.0.3, addresses: [10.8.0.1/24]}\n" +
			"  - {type: gtpu, remote: 10.201.0.2, addresses: [10.9.0.1/24], gtpu: {sessions: [{local_teid: 1, remote_teid: 2, ue4: 10.9.0.2}]}}\n" +
			"  - {type: gtpu, port: 2152, remote: 10.201.0.3, addresses: [10.10.0.1/24], gtpu: {sessions: [{local_teid: 3, remote_teid: 4, ue4: 10.10.0.2}]}}\n", 0, "OK"},
		{"tcp forward with an idle timeout", good + "forwards: [{proto: tcp, listen: 127.0.0.1:8081, target: 192.168.42.2:80, idle_timeout: 30s}]\n", 1, "line 11: forwards[0].idle_timeout"},
		{"forward to port 0", good + "forwards: [{proto: udp, listen: 127.0.0.1:5353, target: 192.168.42.2:0}]\n", 1, "line 11: forwards[0].target"},
		{"forward to the unspecified address", good + "forwards: [{proto: tcp, listen: 127.0.0.1:8081, target: 0.0.0.0:80}]\n", 1, "line 11: forwards[0].target"},
		{"forward with a zone", good + "forwards: [{proto: tcp, listen: \"[fe80::1%lo]:8081\", target: \"[fe80::2%lo]:80\"}]\n", 1, "line 11: forwards[0].listen"},
		{"session without UE", "interfaces:\n  - {type: gtpu, remote: 10.0.0.1, addresses: [10.1.0.1/24], gtpu: {sessions: [{local_teid: 1, remote_teid: 2}]}}\n", 1, "line 2: interfaces[0]"},
	})
}

// checkCase is a configuration file, the exit code `udptunnel check` must
// give it and a piece of the output it must print.
type checkCase struct {
	name, yaml string
	code       int
	want       string
}

// runCheckCases runs `udptunnel check` on each case, as a subtest.
func runCheckCases(t *testing.T, cases []checkCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := t.TempDir() + "/c.yaml"
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{"check", "-c", path}, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, stdout.String(), stderr.String())
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

// TestREADMEConfig keeps the README's configuration examples true: every
// yaml block must pass `udptunnel check`.
func TestREADMEConfig(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```yaml\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("README.md has %d configuration examples (yaml blocks), want the client's and EVPN's", len(blocks))
	}
	for i, b := range blocks {
		example, _, _ := strings.Cut(b, "```")
		path := t.TempDir() + "/readme.yaml"
		if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := run([]string{"check", "-c", path}, &stdout, &stderr); code != 0 {
			t.Errorf("udptunnel check on README's example %d: exit %d\n%s%s", i+1, code, stdout.String(), stderr.String())
		}
	}
}
