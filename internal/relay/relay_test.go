package relay_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/udptunnel/udptunnel/internal/relay"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestPipe relays between a client and a target: bytes both ways, the
// client's buffered first bytes first, a half-close passed on while the
// other direction goes on, and the counts.
func TestPipe(t *testing.T) {
	client, clientProxy := tcpPair(t)
	targetProxy, target := tcpPair(t)
	br := bufio.NewReader(io.MultiReader(strings.NewReader("early "), clientProxy))
	var up, down atomic.Uint64
	done := make(chan struct{})
	go func() { relay.Pipe(clientProxy, br, targetProxy, &up, &down); close(done) }()

	client.Write([]byte("hello"))
	client.CloseWrite()
	got, err := io.ReadAll(target)
	if err != nil || string(got) != "early hello" {
		t.Fatalf("target read %q, %v; want the early bytes then the client's, then EOF", got, err)
	}
	// The other direction still works after the client's half-close.
	reply := bytes.Repeat([]byte("r"), 100000)
	target.Write(reply)
	target.CloseWrite()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	back, err := io.ReadAll(client)
	if err != nil || !bytes.Equal(back, reply) {
		t.Fatalf("client read %d bytes, %v; want %d", len(back), err, len(reply))
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not return after both directions ended")
	}
	if up.Load() != uint64(len("early hello")) || down.Load() != uint64(len(reply)) {
		t.Errorf("counted up %d, down %d; want %d, %d", up.Load(), down.Load(), len("early hello"), len(reply))
	}
}

// TestPipeErrorClosesBoth checks that a failing side closes the other.
func TestPipeErrorClosesBoth(t *testing.T) {
	client, clientProxy := tcpPair(t)
	targetProxy, target := tcpPair(t)
	done := make(chan struct{})
	go func() { relay.Pipe(clientProxy, nil, targetProxy, nil, nil); close(done) }()
	target.SetLinger(0)
	target.Close() // a reset: the relay's read from the target fails
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("client read succeeded after the target failed")
	}
	client.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not return after an error")
	}
}
