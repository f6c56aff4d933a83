// Package fuzzseed keeps the committed seed corpora of the project's fuzz
// targets (testdata/fuzz/<target>) in step with the fixtures they are
// made from: a package's TestFuzzSeeds checks them, and with -write-seeds
// rewrites them.
package fuzzseed

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var write = flag.Bool("write-seeds", false, "rewrite the fuzz seed corpora under testdata/fuzz from the fixtures")

// Sync checks, or with -write-seeds writes, the seed files of one fuzz
// target in the go test fuzz v1 format: one file per name, holding the
// target's arguments.
func Sync(t testing.TB, target string, seeds map[string][]any) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	names := make([]string, 0, len(seeds))
	for name := range seeds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range seeds[name] {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			case byte:
				fmt.Fprintf(&b, "byte(%q)\n", v)
			default:
				fmt.Fprintf(&b, "%T(%v)\n", v, v)
			}
		}
		path := filepath.Join(dir, name)
		if *write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != b.String() {
			t.Errorf("%s is missing or stale: run this package's TestFuzzSeeds with -write-seeds", path)
		}
	}
}
