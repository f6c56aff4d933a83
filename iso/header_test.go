package iso

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestHeaders(t *testing.T) {
	tests := []struct {
		name   string
		body   int
		header []byte
	}{
		{HeaderBinary2, 0x0122, []byte{0x01, 0x22}},
		{HeaderBinary2Inclusive, 0x0122, []byte{0x01, 0x24}},
		{HeaderASCII4, 290, []byte("0290")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := HeaderByName(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.Append(nil, tc.body)
			if err != nil || !bytes.Equal(got, tc.header) {
				t.Fatalf("Append = %x, %v; want %x", got, err, tc.header)
			}
			n, err := h.Decode(tc.header)
			if err != nil || n != tc.body {
				t.Fatalf("Decode = %d, %v", n, err)
			}
			body := bytes.Repeat([]byte("x"), tc.body)
			frame, _ := Frame(h, body)
			read, err := ReadFrame(bytes.NewReader(frame), h, 1000)
			if err != nil || !bytes.Equal(read, body) {
				t.Fatalf("ReadFrame: %v", err)
			}
			if _, err := ReadFrame(bytes.NewReader(frame), h, tc.body-1); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("over the limit: %v", err)
			}
			if _, err := ReadFrame(bytes.NewReader(frame[:len(frame)-1]), h, 1000); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("truncated: %v", err)
			}
		})
	}
	if _, err := HeaderByName("bcd2"); err == nil {
		t.Fatal("unknown header accepted")
	}
	h, _ := HeaderByName(HeaderASCII4)
	if _, err := h.Decode([]byte("12a4")); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("ascii4 with a letter: %v", err)
	}
	hi, _ := HeaderByName(HeaderBinary2Inclusive)
	if _, err := hi.Decode([]byte{0, 1}); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("inclusive length 1: %v", err)
	}
}

func TestLoadDialectRefusesBrokenSpecs(t *testing.T) {
	for name, spec := range map[string]string{
		"not JSON":       `{`,
		"null field":     `{"name":"x","fields":{"0":null}}`,
		"no bitmap":      `{"name":"x","fields":{"0":{"type":"String","length":4,"enc":"ASCII","prefix":"ASCII.Fixed"}}}`,
		"unknown prefix": `{"name":"x","fields":{"0":{"type":"String","length":4,"enc":"ASCII","prefix":"ASCII.QQ"}}}`,
		"missing fields": `{"name":"x","fields":{"0":{"type":"String","length":4,"enc":"ASCII","prefix":"ASCII.Fixed"},"1":{"type":"Bitmap","length":8,"enc":"HexToASCII","prefix":"Hex.Fixed"}}}`,
	} {
		if _, err := LoadDialect(name, []byte(spec)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	if _, err := Builtin("nope"); !errors.Is(err, ErrUnknownDialect) {
		t.Fatalf("unknown builtin: %v", err)
	}
}

// trickle hands out at most one byte per Read and records the largest
// buffer it was given.
type trickle struct {
	data    []byte
	largest int
}

func (t *trickle) Read(p []byte) (int, error) {
	t.largest = max(t.largest, len(p))
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:1], t.data)
	t.data = t.data[n:]
	return n, nil
}

// TestReadFrameGrowsWithTheBytes: the body buffer grows with what has
// arrived, not with what the header announces, and never reads past the
// frame into the next one.
func TestReadFrameGrowsWithTheBytes(t *testing.T) {
	h, _ := HeaderByName(HeaderBinary2)
	promise := &trickle{data: append([]byte{0xff, 0xff}, "0800"...)}
	if _, err := ReadFrame(promise, h, 0xffff); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("65,535 bytes announced, 4 sent: %v", err)
	}
	if promise.largest > bodyChunk {
		t.Fatalf("read into a buffer of %d bytes for a body of 4 so far", promise.largest)
	}
	for _, n := range []int{0, 1, bodyChunk - 1, bodyChunk, bodyChunk + 1, 3*bodyChunk + 7, 9999} {
		body := bytes.Repeat([]byte{'b'}, n)
		first, _ := Frame(h, body)
		next, _ := Frame(h, []byte("next"))
		r := bytes.NewReader(append(first, next...))
		got, err := ReadFrame(r, h, 0xffff)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%d bytes: got %d, %v", n, len(got), err)
		}
		if got, err := ReadFrame(r, h, 0xffff); err != nil || string(got) != "next" {
			t.Fatalf("after %d bytes, the next frame: %q, %v", n, got, err)
		}
	}
}
