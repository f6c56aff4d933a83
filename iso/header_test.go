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
