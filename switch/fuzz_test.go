package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/fixture"
)

// FuzzHandle's seed corpus lives in testdata/fuzz/FuzzHandle, made from
// the replay conversations and the third-party captures by
// TestFuzzSeeds; findings are added there by hand as regressions.

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the fuzz seed corpora under testdata/fuzz from the fixtures")

// FuzzHandle runs arbitrary message bodies through the processor with a
// ledger that keeps nothing: whatever arrives is answered or dropped,
// never a panic.
func FuzzHandle(f *testing.F) {
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		f.Fatal(err)
	}
	p := &processor{books: memBooks{}, now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	bank := config.DefaultBank(":0")
	lim := config.DefaultLimits()
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := d.Unpack(body)
		if err != nil {
			return
		}
		p.handle(context.Background(), bank, d, lim, msg)
	})
}

// TestFuzzSeeds checks that the requests of the replay conversations and
// the third-party captures are in FuzzHandle's corpus, or with
// -write-seeds writes them.
func TestFuzzSeeds(t *testing.T) {
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for i, b := range thirdPartyFixtures(t) {
		seeds[fmt.Sprintf("third-party-%02d", i+1)] = b
	}
	paths, _ := filepath.Glob("../testdata/replay/*/*.yaml")
	for _, p := range paths {
		fx, err := fixture.Load(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fx.DialectName() != iso.DefaultDialect {
			continue
		}
		stem := "replay-" + filepath.Base(filepath.Dir(p)) + "-" + strings.TrimSuffix(filepath.Base(p), ".yaml")
		for i, s := range fx.Steps {
			if b, err := s.Request.Pack(d); err == nil {
				seeds[fmt.Sprintf("%s-%02d", stem, i+1)] = b
			}
		}
	}
	names := make([]string, 0, len(seeds))
	for name := range seeds {
		names = append(names, name)
	}
	sort.Strings(names)
	dir := filepath.Join("testdata", "fuzz", "FuzzHandle")
	for _, name := range names {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seeds[name])
		path := filepath.Join(dir, name)
		if *writeSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != want {
			t.Errorf("%s is missing or stale: go test ./switch -run TestFuzzSeeds -write-seeds", path)
		}
	}
}
