package tunneltest

import (
	"io"
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/udptunnel/udptunnel/stack"
)

// CloseTwice closes c, which must succeed, then again: Close is
// idempotent. what names the method in the message ("Close",
// "Socket.Close").
func CloseTwice(t testing.TB, what string, c io.Closer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second %s: %v", what, err)
	}
}

// NoNIC fails t if st still has a NIC called name after what
// ("Device.Close", "Socket.Close").
func NoNIC(t testing.TB, st *stack.Stack, name, after string) {
	t.Helper()
	if _, ok := st.NICByName(name); ok {
		t.Errorf("NIC %s still exists after %s", name, after)
	}
}

// PortFree checks that a plain UDP socket can bind port on st: a closed
// tunnel socket gave its port back.
func PortFree(t testing.TB, st *stack.Stack, port uint16) {
	t.Helper()
	pc, err := st.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), port))
	if err != nil {
		t.Fatalf("plain UDP bind of port %d after Close: %v", port, err)
	}
	pc.Close()
}

// OuterStackClose checks that a device living in another (inner) stack
// than its socket goes when the socket's (outer) stack closes, and that
// nothing leaks: add opens a socket in outer and adds a device in inner;
// after outer's Close, check (if not nil) looks at protocol state, the
// device's NIC must be gone from inner, and once inner is closed too no
// goroutine may be left.
func OuterStackClose(t *testing.T, add func(outer, inner *stack.Stack) (name string), check func()) {
	t.Helper()
	leaks := goleak.IgnoreCurrent()
	outer, inner := stack.New(stack.Options{}), stack.New(stack.Options{})
	defer outer.Close()
	defer inner.Close()
	name := add(outer, inner)
	if _, ok := inner.NICByName(name); !ok {
		t.Fatalf("no NIC %s in the inner stack", name)
	}
	outer.Close() // closes the socket; the device cannot outlive it
	if check != nil {
		check()
	}
	if _, ok := inner.NICByName(name); ok {
		t.Errorf("NIC %s still in the inner stack after its socket's stack closed", name)
	}
	inner.Close()
	goleak.VerifyNone(t, leaks)
}
