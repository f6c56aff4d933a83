package iso

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hexFixture is one captured third-party message from testdata.
type hexFixture struct {
	name     string
	wire     string // the "wire format" comment
	framing  string // the "framing" comment, if any
	what     string
	body     []byte // message bytes, length header removed
	header   []byte // the length header, when the capture has one
	negative bool
}

func loadHexFixtures(t testing.TB) []hexFixture {
	t.Helper()
	paths, err := filepath.Glob("../testdata/fixtures/third-party/*/*.hex")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures found: %v", err)
	}
	var out []hexFixture
	for _, p := range paths {
		f := hexFixture{name: filepath.Base(filepath.Dir(p)) + "/" + filepath.Base(p)}
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			switch {
			case line == "":
			case strings.HasPrefix(line, "# wire format:"):
				f.wire = line
			case strings.HasPrefix(line, "# framing:"):
				f.framing = line
			case strings.HasPrefix(line, "# what:"):
				f.what = line
				f.negative = strings.Contains(line, "NEGATIVE")
			case strings.HasPrefix(line, "#"):
			default:
				if f.body, err = hex.DecodeString(line); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
			}
		}
		if strings.Contains(f.framing, "WITH 2-byte") {
			f.header, f.body = f.body[:2], f.body[2:]
		}
		out = append(out, f)
	}
	return out
}

func (f hexFixture) dialect() string {
	if strings.Contains(f.wire, "bitmap=binary") {
		return "iso87-ascii-binbitmap"
	}
	return DefaultDialect
}

// TestShippedDialectsReadFixtures proves every well-formed captured message
// unpacks with the dialect its bitmap calls for and packs back to the same
// bytes, and that the broken ones are refused with a reason.
func TestShippedDialectsReadFixtures(t *testing.T) {
	for _, f := range loadHexFixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			d, err := Builtin(f.dialect())
			if err != nil {
				t.Fatal(err)
			}
			m, err := d.Unpack(f.body)
			truncated := strings.Contains(f.what, "NEGATIVE (format)")
			if truncated {
				if err == nil {
					t.Fatal("a truncated message unpacked without error")
				}
				if mti, ok := d.ReadMTI(f.body); !ok || mti == "" {
					t.Fatal("the MTI of a truncated message should still be readable")
				}
				return
			}
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			packed, err := m.Pack()
			if err != nil {
				t.Fatalf("pack: %v", err)
			}
			if !bytes.Equal(packed, f.body) {
				t.Fatalf("repacked message differs:\n got %q\nwant %q", packed, f.body)
			}
			if f.negative {
				_, err := ParseRequest(m)
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("a semantically broken message was accepted (err %v)", err)
				}
			}
		})
	}
}

func TestInclusiveHeaderFixture(t *testing.T) {
	h, _ := HeaderByName(HeaderBinary2Inclusive)
	for _, f := range loadHexFixtures(t) {
		if f.header == nil {
			continue
		}
		n, err := h.Decode(f.header)
		if err != nil || n != len(f.body) {
			t.Errorf("%s: header says %d (%v), body has %d", f.name, n, err, len(f.body))
		}
	}
}

func TestEmptySecondaryBitmap(t *testing.T) {
	d, err := Builtin(DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	// 0800 with DE7, DE11, DE70 in a normal message, then the same fields
	// with bit 1 set and an all-zero secondary bitmap after DE70 removed.
	msg := "0800" + "8220000000000000" + "0000000000000000" + "1125161336" + "000255"
	m, err := d.Unpack([]byte(msg))
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	if s, _ := m.GetString(11); s != "000255" {
		t.Fatalf("DE11 = %q", s)
	}
	if _, err := ParseRequest(m); err == nil {
		t.Fatal("an 0800 without DE70 should be a format error")
	}
}
