package iso

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Header is a frame's length header: how the length of the message that
// follows is written on the wire.
type Header interface {
	// Name is the header's configuration name.
	Name() string
	// Size is the header's own length in bytes.
	Size() int
	// Decode returns the length of the message body announced by h,
	// which holds exactly Size bytes.
	Decode(h []byte) (int, error)
	// Append appends the header for a body of n bytes to dst.
	Append(dst []byte, n int) ([]byte, error)
}

// Header names, as used in bank configuration.
const (
	HeaderBinary2          = "binary2"           // 2-byte big-endian body length
	HeaderBinary2Inclusive = "binary2-inclusive" // 2-byte big-endian length counting the header itself
	HeaderASCII4           = "ascii4"            // 4 ASCII decimal digits, body length
)

// Framing errors.
var (
	ErrFrameTooLarge = errors.New("iso: frame over the maximum length")
	ErrBadHeader     = errors.New("iso: malformed length header")
)

// HeaderByName returns the header kind with the given configuration name.
func HeaderByName(name string) (Header, error) {
	switch name {
	case HeaderBinary2, "":
		return binary2{}, nil
	case HeaderBinary2Inclusive:
		return binary2{inclusive: true}, nil
	case HeaderASCII4:
		return ascii4{}, nil
	}
	return nil, fmt.Errorf("iso: unknown length header %q (want %s, %s or %s)", name, HeaderBinary2, HeaderBinary2Inclusive, HeaderASCII4)
}

type binary2 struct{ inclusive bool }

func (b binary2) Name() string {
	if b.inclusive {
		return HeaderBinary2Inclusive
	}
	return HeaderBinary2
}

func (binary2) Size() int { return 2 }

func (b binary2) Decode(h []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(h))
	if b.inclusive {
		if n < 2 {
			return 0, fmt.Errorf("%w: inclusive length %d is shorter than the header", ErrBadHeader, n)
		}
		n -= 2
	}
	return n, nil
}

func (b binary2) Append(dst []byte, n int) ([]byte, error) {
	if b.inclusive {
		n += 2
	}
	if n > 0xFFFF {
		return dst, fmt.Errorf("%w: %d bytes do not fit a 2-byte header", ErrFrameTooLarge, n)
	}
	return binary.BigEndian.AppendUint16(dst, uint16(n)), nil
}

type ascii4 struct{}

func (ascii4) Name() string { return HeaderASCII4 }
func (ascii4) Size() int    { return 4 }

func (ascii4) Decode(h []byte) (int, error) {
	if !isDigits(string(h), 4) {
		return 0, fmt.Errorf("%w: %q is not 4 decimal digits", ErrBadHeader, h)
	}
	n, _ := strconv.Atoi(string(h))
	return n, nil
}

func (ascii4) Append(dst []byte, n int) ([]byte, error) {
	if n > 9999 {
		return dst, fmt.Errorf("%w: %d bytes do not fit a 4-digit header", ErrFrameTooLarge, n)
	}
	return fmt.Appendf(dst, "%04d", n), nil
}

// ReadFrame reads one length-prefixed message body from r. A body longer
// than max is not read: ErrFrameTooLarge tells the caller to drop the link,
// since the stream can no longer be trusted to be in step.
func ReadFrame(r io.Reader, h Header, max int) ([]byte, error) {
	var hb [4]byte
	if _, err := io.ReadFull(r, hb[:h.Size()]); err != nil {
		return nil, err
	}
	n, err := h.Decode(hb[:h.Size()])
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d > %d bytes", ErrFrameTooLarge, n, max)
	}
	body, err := readBody(r, n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// bodyChunk is what a frame's body buffer starts at.
const bodyChunk = 512

// readBody reads n bytes, growing its buffer as they arrive rather than
// taking n up front: a header that announces a large body followed by
// nothing holds bodyChunk bytes, not n.
func readBody(r io.Reader, n int) ([]byte, error) {
	body := make([]byte, 0, min(n, bodyChunk))
	for len(body) < n {
		if len(body) == cap(body) {
			body = append(body, make([]byte, min(n, 2*cap(body))-len(body))...)[:len(body)]
		}
		got, err := io.ReadFull(r, body[len(body):min(n, cap(body))])
		body = body[:len(body)+got]
		if err != nil {
			return nil, err
		}
	}
	return body, nil
}

// Frame returns body preceded by its length header.
func Frame(h Header, body []byte) ([]byte, error) {
	out := make([]byte, 0, h.Size()+len(body))
	out, err := h.Append(out, len(body))
	if err != nil {
		return nil, err
	}
	return append(out, body...), nil
}
