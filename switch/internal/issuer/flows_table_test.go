package issuer

import (
	"context"
	"testing"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// scriptedBooks is a ledger that finds what a row of a table says (a card,
// an original) and keeps what is saved, so that the flows' rules can be
// checked without PostgreSQL.
type scriptedBooks struct {
	memBooks
	tx *scriptedTx
}

func (b scriptedBooks) Do(_ context.Context, fn func(tx bookTx) error) error { return fn(b.tx) }

type scriptedTx struct {
	memTx
	lookup  ledger.Lookup
	orig    *ledger.Original
	saved   *ledger.Record
	effects []ledger.Effect
}

func (t *scriptedTx) LookupRequest(context.Context, ledger.Find) (*ledger.Lookup, error) {
	lk := t.lookup
	return &lk, nil
}

func (t *scriptedTx) FindOriginal(context.Context, ledger.OriginalRef) (*ledger.Original, error) {
	return t.orig, nil
}

func (t *scriptedTx) Save(_ context.Context, r ledger.Record, effects []ledger.Effect) (int64, error) {
	t.saved, t.effects = &r, effects
	return 1, nil
}

// TestAdviceRules is the flow table's advice and completion rows (0120,
// 0220): never declined for funds, in the card's currency only.
func TestAdviceRules(t *testing.T) {
	hold := func() *ledger.Original {
		return &ledger.Original{ID: 5, CardID: 7, Class: "010", TxnType: ledger.KindPurchase, Amount: 3000, Stands: 3000,
			State: ledger.StateAnswered, ResponseCode: "00", Hold: &ledger.Hold{ID: 3, Amount: 3000, Remaining: 3000, State: ledger.HoldActive}}
	}
	advice := func(txn string, amount int64, currency string) *iso.Request {
		return &iso.Request{MTI: "0220", Class: iso.ClassFinancialAdvice, TxnType: txn, Processing: txn + "0000", Amount: amount, Currency: currency,
			STAN: "000001", Acquirer: "1234", Terminal: "ATM00001", RRN: "000000000001"}
	}
	for _, tc := range []struct {
		name    string
		r       *iso.Request
		c       *ledger.Card
		orig    *ledger.Original
		code    string
		effects int
		cash    int64 // the card's cash after
		owed    int64 // what it owes after (its overdraft, negative)
		raised  string
	}{
		{"a completion captures its authorisation's hold", advice(iso.TxnPurchase, 2500, "156"), card(10000, 0), hold(), "00", 2, 7500, 0, ""},
		{"a completion with no hold posts directly", advice(iso.TxnCash, 2500, "156"), card(10000, 0), nil, "00", 1, 7500, 0, ""},
		{"never declined for funds: the rest is owed", advice(iso.TxnPurchase, 2500, "156"), card(1000, 0), nil, "00", 2, 0, -1500, ""},
		{"a refund advice is credited", advice(iso.TxnRefund, 2500, "156"), card(10000, 0), nil, "00", 1, 12500, 0, ""},
		{"a balance advice moves nothing", advice(iso.TxnBalance, 0, "156"), card(10000, 0), nil, "00", 0, 10000, 0, ""},
		{"an unknown DE3 is not supported", advice("40", 2500, "156"), card(10000, 0), nil, "12", 0, 10000, 0, ""},
		{"an unknown card", advice(iso.TxnPurchase, 2500, "156"), nil, nil, "14", 0, 0, 0, ""},
		{"another currency is acknowledged 13, not posted, kept as an exception", advice(iso.TxnPurchase, 5000, "840"), card(10000, 0), nil, "13", 1, 10000, 0, ledger.ExceptionForeignCurrency},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &scriptedTx{lookup: ledger.Lookup{Card: tc.c}, orig: tc.orig}
			p := testIssuer(scriptedBooks{tx: tx})
			build := func(decision) ([]byte, error) { return []byte("response"), nil }
			a, err := p.advice(context.Background(), config.DefaultBank(":0"), tc.r, build)
			if err != nil {
				t.Fatal(err)
			}
			if tx.saved == nil || tx.saved.ResponseCode != tc.code || a.code != tc.code {
				t.Fatalf("answered %s, stored %+v, want %s", a.code, tx.saved, tc.code)
			}
			if len(tx.effects) != tc.effects || a.raised != tc.raised {
				t.Fatalf("%d effects, raised %q; want %d and %q", len(tx.effects), a.raised, tc.effects, tc.raised)
			}
			if c := tc.c; c != nil && (c.Cash != tc.cash || c.Overdraft != tc.owed) {
				t.Fatalf("cash %d owed %d, want %d and %d", c.Cash, c.Overdraft, tc.cash, tc.owed)
			}
		})
	}
}

// TestNetworkRules is the flow table's 0800 rows: sign-on, sign-off and
// echo are approved, anything else is not supported.
func TestNetworkRules(t *testing.T) {
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	p := testIssuer(memBooks{})
	for code, want := range map[string]struct {
		de39   string
		signOn int
	}{"001": {"00", 1}, "002": {"00", -1}, "301": {"00", 0}, "999": {"12", 0}} {
		m := message(t, d, "0800", map[int]string{7: "1125101010", 11: "000001", 70: code})
		resp, a := p.Handle(context.Background(), config.DefaultBank(":0"), d, config.DefaultLimits(), m, nil)
		if a.Code() != want.de39 || a.SignOn() != want.signOn || len(resp) == 0 {
			t.Errorf("0800/%s: %s sign-on %d, want %s and %d", code, a.Code(), a.SignOn(), want.de39, want.signOn)
		}
	}
}
