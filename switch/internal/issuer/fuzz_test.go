package issuer

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/iso/fuzzseed"
	"github.com/goldcard/goldcard/switch/internal/fixture"
)

// FuzzHandle's seed corpus lives in testdata/fuzz/FuzzHandle, made from
// the replay conversations and the third-party captures by
// TestFuzzSeeds; findings are added there by hand as regressions.

// FuzzHandle runs arbitrary message bodies through the processor with a
// ledger that keeps nothing: whatever arrives is answered or dropped,
// never a panic.
func FuzzHandle(f *testing.F) {
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		f.Fatal(err)
	}
	p := testIssuer(memBooks{})
	bank := config.DefaultBank(":0")
	lim := config.DefaultLimits()
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := d.Unpack(body)
		if err != nil {
			return
		}
		p.Handle(context.Background(), bank, d, lim, msg, nil)
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
	seeds := map[string][]any{}
	third, err := fixture.ThirdParty("../../../testdata/fixtures/third-party")
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range third {
		seeds[fmt.Sprintf("third-party-%02d", i+1)] = []any{b}
	}
	paths, _ := filepath.Glob("../../../testdata/replay/*/*.yaml")
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
				seeds[fmt.Sprintf("%s-%02d", stem, i+1)] = []any{b}
			}
		}
	}
	fuzzseed.Sync(t, "FuzzHandle", seeds)
}
