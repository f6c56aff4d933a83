package iso

import (
	"bytes"
	"testing"
)

// FuzzReadAndParse feeds arbitrary bytes through what a bank link does
// with them: frame, unpack, map, respond, pack. Nothing may panic.
func FuzzReadAndParse(f *testing.F) {
	h, _ := HeaderByName(HeaderBinary2)
	for _, fx := range loadHexFixtures(f) {
		frame, _ := Frame(h, fx.body)
		f.Add(frame)
	}
	f.Add([]byte{0xff, 0xff})
	f.Add([]byte{0x00, 0x04, '0', '8', '0', '0'})
	dialects := []*Dialect{}
	for _, name := range BuiltinNames() {
		d, err := Builtin(name)
		if err != nil {
			f.Fatal(err)
		}
		dialects = append(dialects, d)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := ReadFrame(bytes.NewReader(data), h, 8192)
		if err != nil {
			return
		}
		for _, d := range dialects {
			d.ReadMTI(body)
			m, err := d.Unpack(body)
			if err != nil {
				continue
			}
			if _, err := ParseRequest(m); err != nil {
				continue
			}
			if resp, err := Respond(d, m); err == nil {
				_, _ = resp.Pack()
			}
		}
	})
}
