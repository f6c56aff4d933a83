package issuer

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// lostCommitBooks loses the outcome of the first commit; later lookups see
// the saved record if committed is set, and fail if broken is set.
type lostCommitBooks struct {
	memBooks
	calls     int
	saved     *ledger.Record
	committed bool
	broken    bool
}

type lostCommitTx struct {
	memTx
	b *lostCommitBooks
}

func (b *lostCommitBooks) Do(ctx context.Context, fn func(tx bookTx) error) error {
	b.calls++
	if b.calls > 1 && b.broken {
		return errors.New("connection refused")
	}
	if err := fn(lostCommitTx{b: b}); err != nil {
		return err
	}
	if b.calls == 1 {
		return ledger.ErrCommitUnknown
	}
	return nil
}

func (t lostCommitTx) LookupRequest(ctx context.Context, f ledger.Find) (*ledger.Lookup, error) {
	if t.b.calls > 1 && t.b.committed && t.b.saved != nil {
		r := t.b.saved
		return &ledger.Lookup{Prior: &ledger.Prior{Fingerprint: r.Fingerprint, State: ledger.StateAnswered, ResponseCode: r.ResponseCode, Response: r.Response}}, nil
	}
	return t.memTx.LookupRequest(ctx, f)
}

func (t lostCommitTx) Save(_ context.Context, r ledger.Record, _ []ledger.Effect) (int64, error) {
	t.b.saved = &r
	return 1, nil
}

// TestUnknownCommit: a request whose commit never came back is answered
// with what was stored if it committed, 91 if not, and not at all if the
// ledger cannot say.
func TestUnknownCommit(t *testing.T) {
	d, _ := iso.Builtin(iso.DefaultDialect)
	m := message(t, d, "0200", map[int]string{2: "6228480000000001", 3: "000000", 4: "000000000100", 7: "1125101010",
		11: "000001", 32: "1234", 37: "000000000001", 41: "ATM00001", 49: "156"})
	for _, tc := range []struct {
		name              string
		committed, broken bool
		wantCode          string
	}{
		{"committed", true, false, "00"},
		{"rolled back", false, false, "91"},
		{"ledger unreachable", false, true, codeUnanswered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &lostCommitBooks{committed: tc.committed, broken: tc.broken}
			p := testIssuer(b)
			resp, a := p.Handle(context.Background(), config.DefaultBank(":0"), d, config.DefaultLimits(), m, nil)
			if a.code != tc.wantCode {
				t.Fatalf("code %s, want %s", a.code, tc.wantCode)
			}
			switch tc.wantCode {
			case "00":
				if !bytes.Equal(resp, b.saved.Response) {
					t.Fatal("the answer is not the stored response")
				}
			case codeUnanswered:
				if resp != nil {
					t.Fatal("answered although the outcome is unknown")
				}
			}
		})
	}
}
