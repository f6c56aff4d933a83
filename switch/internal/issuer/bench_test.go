package issuer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// memBooks is a ledger that keeps nothing, to measure the processor alone.
type memBooks struct{}

func (memBooks) Do(ctx context.Context, fn func(tx bookTx) error) error { return fn(memTx{}) }

func (memBooks) AwaitDecision(context.Context, int64) (*ledger.Prior, error) {
	return nil, errors.New("memBooks: nothing is ever being decided")
}

func (memBooks) Release(context.Context, int64, int64, string, []byte) (bool, error) {
	return true, nil
}

type memTx struct{}

func (memTx) LookupRequest(context.Context, ledger.Find) (*ledger.Lookup, error) {
	return &ledger.Lookup{Card: &ledger.Card{ID: 1, Masked: "622848******0001", Currency: "156", Status: ledger.StatusActive, Cash: 1 << 40}}, nil
}

func (memTx) FindOriginal(context.Context, ledger.OriginalRef) (*ledger.Original, error) {
	return nil, nil
}

func (memTx) Save(context.Context, ledger.Record, []ledger.Effect) (int64, error) { return 0, nil }

func (memTx) BeginDeciding(context.Context, ledger.Record, time.Duration) (int64, int64, error) {
	return 1, 1, nil
}

func (memTx) Fence(context.Context, int64, int64) error { return nil }

func (memTx) StartRedemption(context.Context, *ledger.Card, ledger.NewRedemption) error { return nil }

func (memTx) ConfirmRedemption(context.Context, *ledger.Card, string) (bool, error) { return true, nil }

// BenchmarkUnpackDecidePack is one approved 0200 debit through the switch
// without the database: unpack, map, decide, build and pack the response.
func BenchmarkUnpackDecidePack(b *testing.B) {
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		b.Fatal(err)
	}
	m := message(b, d, "0200", map[int]string{
		2: "6228480000000001", 3: "000000", 4: "000000000100", 7: "1125101010", 11: "000001",
		12: "101010", 13: "1125", 32: "1234", 37: "000000000001", 41: "ATM00001", 42: "MERCHANT0000001", 49: "156",
	})
	raw, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	p := testIssuer(memBooks{})
	bank := config.DefaultBank(":0")
	lim := config.DefaultLimits()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		msg, err := d.Unpack(raw)
		if err != nil {
			b.Fatal(err)
		}
		resp, a := p.Handle(ctx, bank, d, lim, msg, raw)
		if a.code != rcApproved || len(resp) == 0 {
			b.Fatalf("code %s", a.code)
		}
	}
}
