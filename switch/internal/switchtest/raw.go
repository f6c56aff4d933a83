package switchtest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Raw is a bank connection without the ISO library, for malformed input.
type Raw struct{ Conn net.Conn }

// DialRaw connects to addr for the length of the test.
func DialRaw(t *testing.T, addr string) *Raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Raw{c}
}

// WriteHeader writes a 2-byte length header announcing n bytes.
func (r *Raw) WriteHeader(t *testing.T, n int) {
	t.Helper()
	if _, err := r.Conn.Write(binary.BigEndian.AppendUint16(nil, uint16(n))); err != nil {
		t.Fatal(err)
	}
}

// Write writes body as one frame.
func (r *Raw) Write(t *testing.T, body []byte) {
	t.Helper()
	r.WriteHeader(t, len(body))
	if _, err := r.Conn.Write(body); err != nil {
		t.Fatal(err)
	}
}

// RoundTrip is Exchange, failing the test on an error.
func (r *Raw) RoundTrip(t *testing.T, body []byte) []byte {
	t.Helper()
	resp, err := r.Exchange(body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return resp
}

// Exchange sends one framed body and reads one framed answer.
func (r *Raw) Exchange(body []byte) ([]byte, error) {
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	if _, err := r.Conn.Write(append(frame, body...)); err != nil {
		return nil, err
	}
	_ = r.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(r.Conn, h[:]); err != nil {
		return nil, err
	}
	resp := make([]byte, binary.BigEndian.Uint16(h[:]))
	if _, err := io.ReadFull(r.Conn, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// ClosedWithin reports whether the switch closes the link within d.
func (r *Raw) ClosedWithin(d time.Duration) bool {
	_ = r.Conn.SetReadDeadline(time.Now().Add(d))
	_, err := r.Conn.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// ExpectClosed fails unless the switch closes the link within 5s.
func (r *Raw) ExpectClosed(t *testing.T) {
	t.Helper()
	_ = r.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the link stayed open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the link stayed open")
	}
}
