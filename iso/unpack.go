package iso

import (
	"errors"
	"fmt"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
)

// ErrTrailingBytes is returned by Unpack for a body that goes on after the
// last field its bitmap announces.
var ErrTrailingBytes = errors.New("iso: bytes after the last field")

// Unpack reads one message body (without its length header). moov reads
// the fields the bitmap announces and stops, so a body that holds more
// than they take is refused with ErrTrailingBytes: the bytes left over
// mean the dialect read a field other than the bank wrote it (a length
// prefix of another width, a private field with a sub-bitmap), and the
// fields read may not be the ones sent.
func (d *Dialect) Unpack(b []byte) (*iso8583.Message, error) {
	m := iso8583.NewMessage(d.Spec)
	if err := m.Unpack(b); err != nil {
		return m, err
	}
	n, last, err := bodyLength(d.Spec, m.Bitmap(), b)
	if err != nil {
		return m, fmt.Errorf("measuring the message: %w", err)
	}
	if n < len(b) {
		return m, fmt.Errorf("%w: %d after DE%d", ErrTrailingBytes, len(b)-n, last)
	}
	return m, nil
}

// bodyLength is how many bytes of b the MTI, the bitmap bm and the fields
// it announces take, measured as moov's Unpack reads them, and the last
// of those fields (1 for the bitmap when it announces none). It is called
// only on a body moov has just unpacked with spec, so every length in it
// decodes. It reads length prefixes and counts encoded bytes without
// decoding values: once a message, this is on every request's path.
func bodyLength(spec *iso8583.MessageSpec, bm *field.Bitmap, b []byte) (n, last int, err error) {
	last = 1
	n, err = walkFields(spec, bm, b, func(id int, _ fieldSpan) { last = id })
	return n, last, err
}

// A fieldSpan is where one field lies in a body: from off, n bytes,
// length prefix included; empty when its length prefix says 0.
type fieldSpan struct {
	off, n int
	empty  bool
}

// walkFields measures, as bodyLength does, the fields of body b that bm
// announces, and calls each with its id and its span in b. It returns
// where the last one ends.
func walkFields(spec *iso8583.MessageSpec, bm *field.Bitmap, b []byte, each func(id int, s fieldSpan)) (int, error) {
	n, _, err := fieldLength(spec.Fields[0], b)
	if err != nil {
		return 0, fmt.Errorf("MTI: %w", err)
	}
	read, err := bitmapLength(spec.Fields[1], bm, b[n:])
	if err != nil {
		return 0, fmt.Errorf("bitmap: %w", err)
	}
	n += read
	for i := 2; i <= bm.Len(); i++ {
		if bm.IsBitmapPresenceBit(i) || !bm.IsSet(i) {
			continue
		}
		read, empty, err := fieldLength(spec.Fields[i], b[n:])
		if err != nil {
			return 0, fmt.Errorf("DE%d: %w", i, err)
		}
		each(i, fieldSpan{off: n, n: read, empty: empty})
		n += read
	}
	return n, nil
}

// fieldLength is how many bytes of b field f takes, prefix included, and
// whether its length prefix says it holds nothing.
func fieldLength(f field.Field, b []byte) (int, bool, error) {
	spec := f.Spec()
	switch f.(type) {
	case *field.Composite:
		// moov reads a composite's length (or its fixed length) in bytes
		// and refuses one whose subfields do not fill it exactly.
		length, pref, err := spec.Pref.DecodeLength(spec.Length, b)
		return pref + length, length == 0, err
	case *field.String, *field.Numeric, *field.Binary, *field.Hex, *field.Track1, *field.Track2, *field.Track3:
		if spec.Unpacker != nil {
			break
		}
		length, pref, err := spec.Pref.DecodeLength(spec.Length, b)
		if err != nil {
			return 0, false, err
		}
		if read, _, ok := encodedSize(spec.Enc, length); ok {
			return pref + read, length == 0, nil
		}
		_, read, err := spec.Enc.Decode(b[pref:], length)
		return pref + read, length == 0, err
	}
	// A field of a kind moov does not ship, or with its own unpacker
	// (specs built in Go, never from JSON): read it again, which costs
	// what its reading costs but measures it exactly.
	n, err := field.NewInstanceOf(f).Unpack(b)
	return n, false, err
}

// bitmapLength is how many bytes of b the bitmaps of bm take: moov reads
// one bitmap after another while the first bit of the last one is set.
func bitmapLength(f field.Field, bm *field.Bitmap, b []byte) (int, error) {
	spec := f.Spec()
	size := spec.Length
	if size == 0 {
		size = 8 // moov's default bitmap length
	}
	length, _, err := spec.Pref.DecodeLength(size, b)
	if err != nil {
		return 0, err
	}
	read, decoded, ok := encodedSize(spec.Enc, length)
	if !ok || decoded == 0 || spec.Unpacker != nil {
		return field.NewInstanceOf(f).Unpack(b)
	}
	return bm.Len() / 8 / decoded * read, nil
}

// encodedSize is how many bytes moov's encoder enc reads for a value of
// length characters (or bytes, or digits), and how many it decodes them
// to; ok is false for an encoder whose size depends on the bytes.
func encodedSize(enc encoding.Encoder, length int) (read, decoded int, ok bool) {
	switch enc {
	case encoding.ASCII, encoding.EBCDIC, encoding.EBCDIC1047, encoding.Binary:
		return length, length, true
	case encoding.BCD, encoding.LBCD:
		return (length + 1) / 2, length, true
	case encoding.BytesToASCIIHex: // "HexToASCII" in a JSON spec: bytes written as hex
		return 2 * length, length, true
	case encoding.ASCIIHexToBytes: // "ASCIIToHex": hex written as bytes
		return length, 2 * length, true
	}
	return 0, 0, false
}
