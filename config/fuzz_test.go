package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso/fuzzseed"
)

// The fuzz targets' seed corpora live in testdata/fuzz/<target>, made
// from testdata/goldcard.yaml and the decoding cases by TestFuzzSeeds;
// findings are added there by hand as regressions.

// FuzzDecodeValue decodes arbitrary values under arbitrary keys. A value
// accepted encodes to JSON that decodes to the same value, as the config
// center stores it; and a snapshot built from it can be validated.
func FuzzDecodeValue(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		v, err := config.DecodeValue(key, value)
		if err != nil {
			return
		}
		first, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: an accepted value does not encode: %v", key, err)
		}
		again, err := config.DecodeValue(key, first)
		if err != nil {
			t.Fatalf("%s: %s re-encoded as %s is refused: %v", key, value, first, err)
		}
		if second, _ := json.Marshal(again); !bytes.Equal(first, second) {
			t.Fatalf("%s: %s decodes differently the second time: %s", key, first, second)
		}
		snap, err := config.Build(1, map[string][]byte{key: value}, nil)
		if err != nil {
			t.Fatalf("%s: accepted alone, refused by Build: %v", key, err)
		}
		_ = snap.Validate(nil)
	})
}

// FuzzParseFile reads arbitrary config files. A file accepted builds a
// snapshot, and that snapshot's values (with its dialects, which Values
// leaves out) build it again.
func FuzzParseFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, err := config.ParseFile(data)
		if err != nil {
			return
		}
		snap, err := config.Build(1, kvs, nil)
		if err != nil {
			t.Fatalf("a file accepted does not build: %v", err)
		}
		_ = snap.Validate(nil)
		vals := snap.Values()
		for name, spec := range snap.Dialects {
			vals["dialects/"+name] = spec
		}
		again, err := config.Build(1, vals, nil)
		if err != nil {
			t.Fatalf("a snapshot's own values do not build: %v", err)
		}
		a, _ := json.Marshal(snap)
		b, _ := json.Marshal(again)
		if !bytes.Equal(a, b) {
			t.Fatalf("rebuilt from its values, the snapshot differs:\n%s\n%s", a, b)
		}
	})
}

// TestFuzzSeeds checks that the example config and the decoding cases
// have their seeds in the corpora, or with -write-seeds writes them.
func TestFuzzSeeds(t *testing.T) {
	example, err := os.ReadFile("../testdata/goldcard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]any{"goldcard.yaml": {example}}
	values := map[string][]any{}
	kvs, err := config.ParseFile(example)
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range kvs {
		values["goldcard.yaml-"+strings.ReplaceAll(key, "/", "-")] = []any{key, v}
	}
	for i, tc := range decodeCases {
		values[fmt.Sprintf("case-%02d", i+1)] = []any{tc.key, []byte(tc.value)}
		// The same value as a file's section.
		kind, name, _ := strings.Cut(tc.key, "/")
		doc := fmt.Sprintf("%s: %s\n", kind, tc.value)
		if name != "" {
			doc = fmt.Sprintf("%s:\n  %q: %s\n", kind, name, tc.value)
		}
		files[fmt.Sprintf("case-%02d", i+1)] = []any{[]byte(doc)}
	}
	fuzzseed.Sync(t, "FuzzDecodeValue", values)
	fuzzseed.Sync(t, "FuzzParseFile", files)
}
