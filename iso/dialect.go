package iso

import (
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/specs"
)

// DefaultDialect is the dialect of the built-in bank: ISO 8583:1987 ASCII
// with hex-ASCII bitmaps.
const DefaultDialect = "iso87-ascii"

//go:embed dialects/*.json
var shipped embed.FS

// Dialect is one way of writing ISO 8583 on the wire: a field spec.
type Dialect struct {
	Name string
	Spec *iso8583.MessageSpec
}

// ErrUnknownDialect is returned by Builtin for a name that is not shipped.
var ErrUnknownDialect = errors.New("iso: unknown dialect")

// LoadDialect builds a dialect from a moov-io JSON spec. It refuses a spec
// without an MTI, a bitmap, or any of the fields the switch reads or writes.
func LoadDialect(name string, specJSON []byte) (d *Dialect, err error) {
	// The spec importer dereferences what the JSON gives it; a null field
	// must be an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("loading dialect %s: malformed spec: %v", name, r)
		}
	}()
	spec, err := specs.ImportJSON(specJSON)
	if err != nil {
		return nil, fmt.Errorf("loading dialect %s: %w", name, err)
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("loading dialect %s: %w", name, err)
	}
	var missing []string
	for _, id := range requiredFields {
		if _, ok := spec.Fields[id]; !ok {
			missing = append(missing, fmt.Sprint(id))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("loading dialect %s: fields the switch needs are not defined: %s", name, strings.Join(missing, ", "))
	}
	if _, ok := spec.Fields[0].(*field.String); !ok {
		return nil, fmt.Errorf("loading dialect %s: field 0 (MTI) must be a String field", name)
	}
	return &Dialect{Name: name, Spec: spec}, nil
}

// requiredFields are read from requests or written into responses.
var requiredFields = []int{0, 1, 2, 3, 4, 7, 11, 12, 13, 14, 32, 37, 38, 39, 41, 42, 49, 54, 70, 90, 95}

// Builtin returns one of the dialects shipped with Goldcard.
func Builtin(name string) (*Dialect, error) {
	b, err := shipped.ReadFile(path.Join("dialects", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("%w %q (shipped: %s)", ErrUnknownDialect, name, strings.Join(BuiltinNames(), ", "))
	}
	return LoadDialect(name, b)
}

// BuiltinJSON returns the JSON spec of a shipped dialect.
func BuiltinJSON(name string) ([]byte, error) {
	b, err := shipped.ReadFile(path.Join("dialects", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownDialect, name)
	}
	return b, nil
}

// BuiltinSpecs are the shipped dialects' JSON specs by name, which a config
// may name without defining (config.Build takes them).
func BuiltinSpecs() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for _, name := range BuiltinNames() {
		if b, err := BuiltinJSON(name); err == nil {
			out[name] = b
		}
	}
	return out
}

// BuiltinNames lists the shipped dialects.
func BuiltinNames() []string {
	entries, _ := shipped.ReadDir("dialects")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(names)
	return names
}

// NewMessage returns an empty message of this dialect.
func (d *Dialect) NewMessage() *iso8583.Message {
	return iso8583.NewMessage(d.Spec)
}

// SetField sets field id of m from its text: binary fields (such as DE52,
// DE64 and DE128) from hex, as their String shows them, others as they are.
func (d *Dialect) SetField(m *iso8583.Message, id int, v string) error {
	if _, ok := d.Spec.Fields[id].(*field.Binary); ok {
		b, err := hex.DecodeString(v)
		if err != nil {
			return fmt.Errorf("DE%d is binary: write it in hex", id)
		}
		return m.BinaryField(id, b)
	}
	return m.Field(id, v)
}

// ReadMTI reads only the MTI at the start of a body, for frames whose
// remainder cannot be unpacked. It reports false when the MTI itself is
// unreadable or is not four digits.
func (d *Dialect) ReadMTI(b []byte) (string, bool) {
	f := field.NewInstanceOf(d.Spec.Fields[0])
	if _, err := f.Unpack(b); err != nil {
		return "", false
	}
	s, err := f.String()
	if err != nil || !isDigits(s, 4) {
		return "", false
	}
	return s, true
}
