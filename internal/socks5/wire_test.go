package socks5

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    request
		wantErr error
	}{
		{"connect-ipv4", []byte{5, 1, 0, 1, 192, 168, 42, 2, 0, 80},
			request{CommandConnect, Addr{IP: netip.MustParseAddr("192.168.42.2"), Port: 80}}, nil},
		{"connect-ipv6", append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("fd00:42::2").AsSlice()...), 1, 0xbb),
			request{CommandConnect, Addr{IP: netip.MustParseAddr("fd00:42::2"), Port: 443}}, nil},
		{"udp-domain", append([]byte{5, 3, 0, 3, 4}, "host\x00\x35"...),
			request{CommandUDPAssociate, Addr{Name: "host", Port: 53}}, nil},
		{"rsv-ignored", []byte{5, 2, 0xAA, 1, 1, 2, 3, 4, 0, 1},
			request{CommandBind, Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 1}}, nil},
		{"version-4", []byte{4, 1, 0, 1, 1, 2, 3, 4, 0, 1}, request{}, ErrVersion},
		{"atyp-2", []byte{5, 1, 0, 2, 1, 2, 3, 4, 0, 1}, request{}, ErrAddrType},
		{"empty-domain", []byte{5, 1, 0, 3, 0, 0, 1}, request{}, ErrMalformed},
		{"truncated-ipv6", []byte{5, 1, 0, 4, 1, 2}, request{}, io.ErrUnexpectedEOF},
		{"truncated-header", []byte{5, 1}, request{}, io.ErrUnexpectedEOF},
		{"empty", nil, request{}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readRequest(bytes.NewReader(tt.in), make([]byte, 512))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUDPHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    UDPHeader
		wire []byte
	}{
		{"ipv4", UDPHeader{Addr: Addr{IP: netip.MustParseAddr("192.168.42.2"), Port: 7}},
			[]byte{0, 0, 0, 1, 192, 168, 42, 2, 0, 7}},
		{"ipv6", UDPHeader{Addr: Addr{IP: netip.MustParseAddr("fd00:42::2"), Port: 0x1234}},
			append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("fd00:42::2").AsSlice()...), 0x12, 0x34)},
		{"domain-frag", UDPHeader{Frag: 0x81, Addr: Addr{Name: "a.b", Port: 53}},
			[]byte{0, 0, 0x81, 3, 3, 'a', '.', 'b', 0, 53}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, tt.h.Len()+3)
			n, err := tt.h.Encode(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wire, b[:n]); diff != "" {
				t.Errorf("Encode (-want +got):\n%s", diff)
			}
			copy(b[n:], "pay")
			h, payload, err := ParseUDPHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if h != tt.h || string(payload) != "pay" {
				t.Errorf("ParseUDPHeader = %+v %q, want %+v %q", h, payload, tt.h, "pay")
			}
			if _, err := tt.h.Encode(b[:n-1]); !errors.Is(err, io.ErrShortBuffer) {
				t.Errorf("Encode into a short buffer: %v, want io.ErrShortBuffer", err)
			}
		})
	}
}

// TestNoAllocs guards the UDP data path: parsing an IP header and encoding
// one into headroom do not allocate.
func TestNoAllocs(t *testing.T) {
	pkt := append([]byte{0, 0, 0, 1, 192, 168, 42, 2, 0, 7}, make([]byte, 1400)...)
	h := UDPHeader{Addr: Addr{IP: netip.MustParseAddr("fd00:42::2"), Port: 7}}
	buf := make([]byte, maxUDPHeaderLen)
	if n := testing.AllocsPerRun(1000, func() {
		if _, _, err := ParseUDPHeader(pkt); err != nil {
			t.Fatal(err)
		}
		if _, err := h.Encode(buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per parse and encode, want 0", n)
	}
}

func TestReplyFor(t *testing.T) {
	opErr := func(msg string) error {
		return &net.OpError{Op: "connect", Net: "tcp", Err: errors.New(msg)}
	}
	tests := []struct {
		name string
		err  error
		want Reply
	}{
		{"gvisor-refused", opErr("connection was refused"), ReplyConnectionRefused},
		{"gvisor-network", opErr("network is unreachable"), ReplyNetworkUnreachable},
		{"gvisor-host", opErr("no route to host"), ReplyHostUnreachable},
		{"gvisor-host-down", opErr("host is down"), ReplyHostUnreachable},
		{"gvisor-timeout", opErr("operation timed out"), ReplyHostUnreachable},
		{"gvisor-not-permitted", opErr("operation not permitted"), ReplyNotAllowed},
		{"host-refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ReplyConnectionRefused},
		{"host-netunreach", &net.OpError{Op: "dial", Err: syscall.ENETUNREACH}, ReplyNetworkUnreachable},
		{"host-hostunreach", &net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, ReplyHostUnreachable},
		{"host-eacces", &net.OpError{Op: "dial", Err: syscall.EACCES}, ReplyNotAllowed},
		{"deadline", context.DeadlineExceeded, ReplyHostUnreachable},
		{"canceled", context.Canceled, ReplyGeneralFailure},
		{"other", errors.New("bad buffer"), ReplyGeneralFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replyFor(tt.err); got != tt.want {
				t.Errorf("replyFor(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// The fuzz targets' seeds are in testdata/fuzz/<target>/, one file per case,
// named after what it exercises and with a comment after its value saying
// so; f.Add adds none, so the files are the whole seed corpus.

// FuzzReadGreeting: any input yields methods or an error; methods are the
// NMETHODS bytes after the header.
func FuzzReadGreeting(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		methods, err := readGreeting(bytes.NewReader(data), make([]byte, 512))
		if err != nil {
			return
		}
		if data[0] != socksVersion || len(methods) != int(data[1]) || !bytes.Equal(methods, data[2:2+len(methods)]) {
			t.Fatalf("readGreeting(% x) = % x", data, methods)
		}
	})
}

// FuzzReadUserPass: a parsed request re-encodes to the bytes it was read
// from.
func FuzzReadUserPass(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		user, pass, err := readUserPass(bytes.NewReader(data), make([]byte, 512))
		if err != nil {
			return
		}
		enc := append([]byte{authVersion, byte(len(user))}, user...)
		enc = append(append(enc, byte(len(pass))), pass...)
		if !bytes.HasPrefix(data, enc) {
			t.Fatalf("readUserPass(% x) = %q, %q: re-encodes to % x", data, user, pass, enc)
		}
	})
}

// FuzzReadRequest: a parsed request re-encodes (RSV as 0) to the bytes it
// was read from.
func FuzzReadRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readRequest(bytes.NewReader(data), make([]byte, 512))
		if err != nil {
			return
		}
		enc := appendReply(nil, Reply(req.Command), req.Dst)
		want := bytes.Clone(data[:min(len(enc), len(data))])
		want[2] = 0
		if !bytes.Equal(enc, want) {
			t.Fatalf("readRequest(% x) = %+v: re-encodes to % x", data, req, enc)
		}
	})
}

// FuzzParseUDPHeader: a parsed header re-encodes to the bytes before the
// payload, and the payload is the rest of the datagram.
func FuzzParseUDPHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		h, payload, err := ParseUDPHeader(data)
		if err != nil {
			return
		}
		hlen := len(data) - len(payload)
		if h.Len() != hlen || !bytes.Equal(payload, data[hlen:]) {
			t.Fatalf("ParseUDPHeader(% x) = %+v, payload % x", data, h, payload)
		}
		enc := make([]byte, h.Len())
		if _, err := h.Encode(enc); err != nil || !bytes.Equal(enc, data[:hlen]) {
			t.Fatalf("ParseUDPHeader(% x) = %+v: re-encodes to % x, %v", data, h, enc, err)
		}
	})
}

// refusingDialer refuses every connection.
type refusingDialer struct{}

func (refusingDialer) DialTCP(context.Context, netip.AddrPort) (net.Conn, error) {
	return nil, syscall.ECONNREFUSED
}

func (refusingDialer) ListenUDP(netip.AddrPort) (net.PacketConn, error) {
	return nil, syscall.EACCES
}

// FuzzServe runs the whole negotiation (greeting, authentication, request)
// of a server with authentication over a pipe: any client bytes end in a
// closed connection, never a panic or a hang. It shares FuzzReadGreeting's
// idea of seeds, with whole conversations.
func FuzzServe(f *testing.F) {
	s, err := NewServer(Config{
		Dialer:           refusingDialer{},
		Auth:             func(user, pass string) bool { return user == "u" },
		HandshakeTimeout: time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer server.Close()
			s.handle(server)
		}()
		go io.Copy(io.Discard, client)
		client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("handle did not return for % x", data)
		}
	})
}

func BenchmarkParseUDPHeader(b *testing.B) {
	pkt := append([]byte{0, 0, 0, 1, 192, 168, 42, 2, 0, 7}, make([]byte, 1400)...)
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		ParseUDPHeader(pkt)
	}
}
