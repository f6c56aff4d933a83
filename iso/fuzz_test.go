package iso

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moov-io/iso8583"
	"sigs.k8s.io/yaml"

	"github.com/goldcard/goldcard/iso/fuzzseed"
)

// The fuzz targets' seed corpora live in testdata/fuzz/<target>, made
// from the captured third-party messages and the replay conversations by
// TestFuzzSeeds; findings are added there by hand as regressions.

// headerKinds are the length headers in the order a fuzz input picks them.
var headerKinds = []string{HeaderBinary2, HeaderBinary2Inclusive, HeaderASCII4}

func headerOf(kind byte) Header {
	h, _ := HeaderByName(headerKinds[int(kind)%len(headerKinds)])
	return h
}

// FuzzReadFrame reads arbitrary bytes as frames with every header kind:
// a frame read is within the limit and frames back to the bytes it was
// read from; anything else is a framing error or a short stream.
func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind byte, limit uint16, data []byte) {
		h := headerOf(kind)
		body, err := ReadFrame(bytes.NewReader(data), h, int(limit))
		if err != nil {
			if !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrBadHeader) &&
				!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(body) > int(limit) {
			t.Fatalf("a body of %d bytes read under a limit of %d", len(body), limit)
		}
		frame, err := Frame(h, body)
		if err != nil {
			t.Fatalf("framing a body just read: %v", err)
		}
		if !bytes.Equal(frame, data[:len(frame)]) {
			t.Fatalf("reframed %q, read from %q", frame, data[:len(frame)])
		}
	})
}

// FuzzReadAndParse feeds arbitrary bytes through what a bank link does
// with them, in both shipped dialects: frame, unpack, map, respond, pack.
// Nothing may panic; a body is read only when its fields take all of it,
// as moov reads them; and a message that unpacks packs back to one that
// unpacks to the same fields.
func FuzzReadAndParse(f *testing.F) {
	h, _ := HeaderByName(HeaderBinary2)
	dialects := builtinDialects(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := ReadFrame(bytes.NewReader(data), h, 8192)
		if err != nil {
			return
		}
		for _, d := range dialects {
			d.ReadMTI(body)
			checkMeasured(t, d, body)
			m, err := d.Unpack(body)
			if err != nil {
				continue
			}
			checkRepack(t, d, m)
			checkReply(t, d, body, m)
			if _, err := ParseRequest(m); err != nil {
				continue
			}
			if resp, err := Respond(d, m); err == nil {
				if id, empty := emptyField(resp); empty {
					t.Fatalf("%s: the response echoes DE%d empty", d.Name, id)
				}
				_, _ = resp.Pack()
			}
		}
	})
}

// checkRepack packs an unpacked message and unpacks it again: the fields
// must survive, since responses echo them.
func checkRepack(t *testing.T, d *Dialect, m *iso8583.Message) {
	t.Helper()
	packed, err := m.Pack()
	if err != nil {
		return // moov refuses to pack some values it unpacks; the switch answers those with what packs
	}
	again, err := d.Unpack(packed)
	if err != nil {
		t.Fatalf("%s: a packed message does not unpack: %v\n%q", d.Name, err, packed)
	}
	for id := range m.GetFields() {
		a, _ := m.GetString(id)
		b, _ := again.GetString(id)
		if id != 1 && a != b {
			t.Fatalf("%s: DE%d was %q, repacked %q", d.Name, id, a, b)
		}
	}
}

// requestFields are the data elements ParseRequest reads, in the order
// FuzzParseRequest takes them after the MTI.
var requestFields = []int{2, 3, 4, 7, 11, 12, 13, 14, 32, 37, 41, 49, 70, 90, 95}

// FuzzParseRequest maps messages of arbitrary field values to typed
// requests: a request accepted is well formed, one refused is a format
// error, and either way the response can be started, with no field
// echoed empty.
func FuzzParseRequest(f *testing.F) {
	d, err := Builtin(DefaultDialect)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mti, de2, de3, de4, de7, de11, de12, de13, de14, de32, de37, de41, de49, de70, de90, de95 string) {
		m := d.NewMessage()
		m.MTI(mti)
		for i, v := range []string{de2, de3, de4, de7, de11, de12, de13, de14, de32, de37, de41, de49, de70, de90, de95} {
			if v != "" {
				_ = m.Field(requestFields[i], v)
			}
		}
		r, err := ParseRequest(m)
		if resp, rerr := Respond(d, m); rerr == nil {
			if id, empty := emptyField(resp); empty {
				t.Fatalf("the response echoes DE%d empty", id)
			}
			_, _ = resp.Pack() // may refuse values no bank could have sent
		}
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("refused without a format error: %v", err)
			}
			return
		}
		if r.Class == ClassUnknown || !isDigits(r.STAN, 6) || len(r.Fingerprint()) != sha256.Size || len(r.MTIClass()) != 3 {
			t.Fatalf("accepted a malformed request %+v", r)
		}
		if r.Class == ClassNetwork {
			return
		}
		if r.PAN == "" || r.TxnType != r.Processing[:2] || r.Amount < 0 || (r.Actual != nil && *r.Actual < 0) {
			t.Fatalf("accepted a malformed request %+v", r)
		}
	})
}

func builtinDialects(t testing.TB) []*Dialect {
	var out []*Dialect
	for _, name := range BuiltinNames() {
		d, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// seedMessage is a message of the fixtures, for seeds.
type seedMessage struct {
	name string
	body []byte
	d    *Dialect
}

// seedMessages are the third-party captures and the requests of the
// replay conversations, packed.
func seedMessages(t *testing.T) []seedMessage {
	var out []seedMessage
	for _, fx := range loadHexFixtures(t) {
		d, err := Builtin(fx.dialect())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, seedMessage{"third-party-" + strings.TrimSuffix(strings.ReplaceAll(fx.name, "/", "-"), ".hex"), fx.body, d})
	}
	paths, _ := filepath.Glob("../testdata/replay/*/*.yaml")
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var conv struct {
			Dialect string
			Steps   []struct {
				Request struct {
					MTI    string
					Fields map[int]string
					Hex    string
				}
			}
		}
		js, err := yaml.YAMLToJSON(raw)
		if err == nil {
			err = json.Unmarshal(js, &conv)
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if conv.Dialect == "" {
			conv.Dialect = DefaultDialect
		}
		d, err := Builtin(conv.Dialect)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		stem := "replay-" + filepath.Base(filepath.Dir(p)) + "-" + strings.TrimSuffix(filepath.Base(p), ".yaml")
		for i, s := range conv.Steps {
			name := fmt.Sprintf("%s-%02d", stem, i+1)
			if s.Request.Hex != "" {
				if b, err := hex.DecodeString(s.Request.Hex); err == nil {
					out = append(out, seedMessage{name, b, d})
				}
				continue
			}
			m := d.NewMessage()
			m.MTI(s.Request.MTI)
			for id, v := range s.Request.Fields {
				_ = m.Field(id, v)
			}
			if b, err := m.Pack(); err == nil {
				out = append(out, seedMessage{name, b, d})
			}
		}
	}
	return out
}

// TestFuzzSeeds checks that every fixture has its seeds in the corpora,
// or with -write-seeds writes them.
func TestFuzzSeeds(t *testing.T) {
	msgs := seedMessages(t)
	frames := map[string][]any{
		"header-65535-then-nothing": {byte(0), uint16(8192), []byte{0xff, 0xff}},
		"ascii4-not-digits":         {byte(2), uint16(8192), []byte("12a4body")},
		"inclusive-shorter-than-2":  {byte(1), uint16(8192), []byte{0, 1}},
	}
	parse := map[string][]any{
		"header-65535-then-nothing": {[]byte{0xff, 0xff}},
		"echo-mti-only":             {[]byte{0x00, 0x04, '0', '8', '0', '0'}},
	}
	d, err := Builtin(DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"echo-with-stray-bytes":   append(echoBody(t, d), "ABCD"...),
		"postilion-six-digit-127": postilion0200(t, d),
	} {
		b2, _ := Frame(headerOf(0), body)
		parse[name] = []any{b2}
	}
	requests := map[string][]any{}
	for i, sm := range msgs {
		kind := byte(i % len(headerKinds))
		frame, err := Frame(headerOf(kind), sm.body)
		if err != nil {
			continue
		}
		frames[sm.name] = []any{kind, uint16(8192), frame}
		b2, _ := Frame(headerOf(0), sm.body)
		parse[sm.name] = []any{b2}
		m, err := sm.d.Unpack(sm.body)
		if err != nil {
			continue
		}
		mti, _ := m.GetMTI()
		args := []any{mti}
		for _, id := range requestFields {
			s, _ := m.GetString(id)
			args = append(args, s)
		}
		requests[sm.name] = args
	}
	fuzzseed.Sync(t, "FuzzReadFrame", frames)
	fuzzseed.Sync(t, "FuzzReadAndParse", parse)
	fuzzseed.Sync(t, "FuzzParseRequest", requests)
}
