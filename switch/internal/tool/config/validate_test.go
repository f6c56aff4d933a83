package configtool

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// TestExampleConfigIsTheDefaults keeps testdata/goldcard.yaml honest: it
// is valid, and every setting in it is the default.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	b, err := os.ReadFile("../../../../testdata/goldcard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kvs, err := config.ParseFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(kvs); err != nil {
		t.Fatal(err)
	}
	got, _ := config.Build(0, kvs, iso.BuiltinSpecs())
	bank := config.DefaultBank(config.DefaultListen)
	bank.Acquirers, bank.AllowedCIDRs = []string{}, []string{}
	want := &config.Snapshot{
		Banks:  map[string]*config.Bank{"default": bank},
		Limits: config.DefaultLimits(), Fund: config.DefaultFund(), Sweep: config.DefaultSweep(),
	}
	for name, have := range map[string][2]any{
		"banks":  {got.Banks, want.Banks},
		"limits": {got.Limits, want.Limits},
		"fund":   {got.Fund, want.Fund},
		"sweep":  {got.Sweep, want.Sweep},
	} {
		if !reflect.DeepEqual(have[0], have[1]) {
			a, _ := json.Marshal(have[0])
			b, _ := json.Marshal(have[1])
			t.Errorf("%s in the example differs from the defaults:\n%s\n%s", name, a, b)
		}
	}
}
