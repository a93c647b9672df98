package socks5_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// A SOCKS5 client written by hand from RFC 1928 and RFC 1929, so that the
// tests do not check the server against its own encoders.

// socksAddr encodes ATYP, ADDR and PORT for an IP or a name.
func socksAddr(ip netip.Addr, name string, port uint16) []byte {
	var b []byte
	switch {
	case name != "":
		b = append([]byte{0x03, byte(len(name))}, name...)
	case ip.Is4():
		a := ip.As4()
		b = append([]byte{0x01}, a[:]...)
	default:
		a := ip.As16()
		b = append([]byte{0x04}, a[:]...)
	}
	return binary.BigEndian.AppendUint16(b, port)
}

// readSocksAddr reads ATYP, ADDR and PORT (IP addresses only).
func readSocksAddr(r io.Reader) (netip.AddrPort, error) {
	var atyp [1]byte
	if _, err := io.ReadFull(r, atyp[:]); err != nil {
		return netip.AddrPort{}, err
	}
	var n int
	switch atyp[0] {
	case 0x01:
		n = 4
	case 0x04:
		n = 16
	default:
		return netip.AddrPort{}, fmt.Errorf("reply ATYP %d", atyp[0])
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return netip.AddrPort{}, err
	}
	ip, _ := netip.AddrFromSlice(b[:n])
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[n:])), nil
}

type client struct {
	t    *testing.T
	conn net.Conn
}

// dialProxy opens a control connection and negotiates: no authentication
// if user is empty, username/password otherwise.
func dialProxy(t *testing.T, proxy string, user, pass string) (*client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn}
	method := byte(0x00)
	if user != "" {
		method = 0x02
	}
	if _, err := conn.Write([]byte{5, 1, method}); err != nil {
		return c, err
	}
	var sel [2]byte
	if _, err := io.ReadFull(conn, sel[:]); err != nil {
		return c, err
	}
	if sel != [2]byte{5, method} {
		return c, fmt.Errorf("method selection % x, want 05 %02x", sel, method)
	}
	if user != "" {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		if _, err := conn.Write(msg); err != nil {
			return c, err
		}
		var st [2]byte
		if _, err := io.ReadFull(conn, st[:]); err != nil {
			return c, err
		}
		if st != [2]byte{1, 0} {
			return c, fmt.Errorf("%w: status % x", errAuth, st)
		}
	}
	return c, nil
}

var errAuth = errors.New("authentication failed")

// request sends a request and reads the reply's REP and BND.
func (c *client) request(cmd byte, ip netip.Addr, name string, port uint16) (byte, netip.AddrPort, error) {
	msg := append([]byte{5, cmd, 0}, socksAddr(ip, name, port)...)
	if _, err := c.conn.Write(msg); err != nil {
		return 0, netip.AddrPort{}, err
	}
	var hdr [3]byte
	if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
		return 0, netip.AddrPort{}, err
	}
	if hdr[0] != 5 || hdr[2] != 0 {
		return 0, netip.AddrPort{}, fmt.Errorf("reply header % x", hdr)
	}
	bnd, err := readSocksAddr(c.conn)
	return hdr[1], bnd, err
}

// connect does CONNECT and fails the test unless it succeeds.
func (c *client) connect(dst netip.AddrPort) netip.AddrPort {
	c.t.Helper()
	rep, bnd, err := c.request(1, dst.Addr(), "", dst.Port())
	if err != nil || rep != 0 {
		c.t.Fatalf("CONNECT %v: reply %d, %v", dst, rep, err)
	}
	c.conn.SetDeadline(time.Time{})
	return bnd
}

// udpDatagram wraps payload in a SOCKS UDP header.
func udpDatagram(frag byte, dst netip.AddrPort, payload []byte) []byte {
	b := append([]byte{0, 0, frag}, socksAddr(dst.Addr(), "", dst.Port())...)
	return append(b, payload...)
}

// parseUDPDatagram splits a datagram from the relay into source and payload.
func parseUDPDatagram(b []byte) (netip.AddrPort, []byte, error) {
	if len(b) < 4 || b[0] != 0 || b[1] != 0 || b[2] != 0 {
		return netip.AddrPort{}, nil, fmt.Errorf("bad UDP header % x", b[:min(len(b), 4)])
	}
	r := &sliceReader{b: b[3:]}
	src, err := readSocksAddr(r)
	return src, r.b, err
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// expectClosed reads from conn until EOF or an error other than a timeout;
// it fails if conn stays open for d.
func expectClosed(t *testing.T, conn net.Conn, d time.Duration) []byte {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (read % x)", d, b)
	}
	return b
}
