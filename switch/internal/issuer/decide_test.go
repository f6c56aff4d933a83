package issuer

import (
	"errors"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// The deciders are pure: these tables run without PostgreSQL, one row per
// rule of the README's flow and response-code tables.

var decideNow = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// card is an active CNY card with cash and a fund position.
func card(cash, fund int64) *ledger.Card {
	return &ledger.Card{ID: 7, Currency: "156", Status: ledger.StatusActive, Cash: cash, Fund: fund}
}

func req(class iso.Class, txn string, amount int64) *iso.Request {
	mti := map[iso.Class]string{iso.ClassAuthorization: "0100", iso.ClassFinancial: "0200"}[class]
	return &iso.Request{MTI: mti, Class: class, TxnType: txn, Processing: txn + "0000", Amount: amount, Currency: "156"}
}

func TestDecideOriginal(t *testing.T) {
	lim := config.DefaultLimits()
	lim.ATMPerTxn, lim.POSPerTxn = 300000, 500000
	blocked := card(10000, 0)
	blocked.Status = ledger.StatusBlocked
	usd := req(iso.ClassFinancial, iso.TxnPurchase, 100)
	usd.Currency = "840"
	expired := req(iso.ClassFinancial, iso.TxnPurchase, 100)
	expired.Expiry = "2610"
	for _, tc := range []struct {
		name string
		r    *iso.Request
		lk   *ledger.Lookup
		code string
		// effects written, and the card's cash and held after
		effects    int
		cash, held int64
		redeem     int64 // the shortfall to redeem, when the fund covers it
	}{
		{"0100 purchase places a hold", req(iso.ClassAuthorization, iso.TxnPurchase, 3000), &ledger.Lookup{Card: card(10000, 0)}, "00", 1, 10000, 3000, 0},
		{"0100 cash places a hold", req(iso.ClassAuthorization, iso.TxnCash, 3000), &ledger.Lookup{Card: card(10000, 0)}, "00", 1, 10000, 3000, 0},
		{"0100 balance inquiry moves nothing", req(iso.ClassAuthorization, iso.TxnBalance, 0), &ledger.Lookup{Card: card(10000, 0)}, "00", 0, 10000, 0, 0},
		{"0100 refund is not an authorisation", req(iso.ClassAuthorization, iso.TxnRefund, 3000), &ledger.Lookup{Card: card(10000, 0)}, "12", 0, 10000, 0, 0},
		{"0200 purchase is posted", req(iso.ClassFinancial, iso.TxnPurchase, 3000), &ledger.Lookup{Card: card(10000, 0)}, "00", 1, 7000, 0, 0},
		{"0200 ATM cash is posted", req(iso.ClassFinancial, iso.TxnCash, 3000), &ledger.Lookup{Card: card(10000, 0)}, "00", 1, 7000, 0, 0},
		{"0200 refund is credited", req(iso.ClassFinancial, iso.TxnRefund, 3000), &ledger.Lookup{Card: card(10000, 0)}, "00", 1, 13000, 0, 0},
		{"0200 deposit is credited", req(iso.ClassFinancial, iso.TxnDeposit, 3000), &ledger.Lookup{Card: card(10000, 0)}, "00", 1, 13000, 0, 0},
		{"0200 balance inquiry moves nothing", req(iso.ClassFinancial, iso.TxnBalance, 0), &ledger.Lookup{Card: card(10000, 0)}, "00", 0, 10000, 0, 0},
		{"unknown DE3", req(iso.ClassFinancial, "40", 3000), &ledger.Lookup{Card: card(10000, 0)}, "12", 0, 10000, 0, 0},
		{"zero amount debit", req(iso.ClassFinancial, iso.TxnPurchase, 0), &ledger.Lookup{Card: card(10000, 0)}, "13", 0, 10000, 0, 0},
		{"zero amount credit", req(iso.ClassFinancial, iso.TxnRefund, 0), &ledger.Lookup{Card: card(10000, 0)}, "13", 0, 10000, 0, 0},
		{"another currency than the card's", usd, &ledger.Lookup{Card: card(10000, 0)}, "13", 0, 10000, 0, 0},
		{"unknown PAN", req(iso.ClassFinancial, iso.TxnPurchase, 100), &ledger.Lookup{}, "14", 0, 0, 0, 0},
		{"blocked card", req(iso.ClassFinancial, iso.TxnPurchase, 100), &ledger.Lookup{Card: blocked}, "57", 0, 10000, 0, 0},
		{"expired card", expired, &ledger.Lookup{Card: card(10000, 0)}, "54", 0, 10000, 0, 0},
		{"over the ATM limit", req(iso.ClassFinancial, iso.TxnCash, 300001), &ledger.Lookup{Card: card(1000000, 0)}, "61", 0, 1000000, 0, 0},
		{"over the POS limit", req(iso.ClassFinancial, iso.TxnPurchase, 500001), &ledger.Lookup{Card: card(1000000, 0)}, "61", 0, 1000000, 0, 0},
		{"a shortfall the fund and quota cover", req(iso.ClassFinancial, iso.TxnPurchase, 30000), &ledger.Lookup{Card: card(2000, 500000)}, "", 0, 2000, 0, 28000},
		{"a hold's shortfall too", req(iso.ClassAuthorization, iso.TxnPurchase, 30000), &ledger.Lookup{Card: card(2000, 500000)}, "", 0, 2000, 0, 28000},
		{"the fund short", req(iso.ClassFinancial, iso.TxnPurchase, 30000), &ledger.Lookup{Card: card(2000, 100)}, "51", 0, 2000, 0, 0},
		{"only the day's quota short", req(iso.ClassFinancial, iso.TxnPurchase, 12000), &ledger.Lookup{Card: func() *ledger.Card { c := card(10000, 500000); c.RedeemedToday = lim.RedemptionQuota - 1000; return c }()}, "61", 0, 10000, 0, 0},
		{"its reversal came first and waits", req(iso.ClassFinancial, iso.TxnPurchase, 3000), &ledger.Lookup{Card: card(10000, 0), Waiting: 41}, "12", 1, 10000, 0, 0},
		{"its reversal settled while it was undecided", req(iso.ClassFinancial, iso.TxnPurchase, 3000), &ledger.Lookup{Card: card(10000, 0), Prior: &ledger.Prior{ReversedBy: 41}}, "12", 0, 10000, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, effects := decideOriginal(tc.r, tc.lk, decideNow, lim)
			var need *needsRedemption
			if errors.As(o.err, &need) {
				if tc.redeem == 0 || need.amount != tc.redeem {
					t.Fatalf("redeem %d, want %d", need.amount, tc.redeem)
				}
				return
			}
			if tc.redeem != 0 {
				t.Fatalf("decided %v, want a redemption of %d", o.err, tc.redeem)
			}
			if got := responseCode(o.err); got != tc.code {
				t.Fatalf("code %s (%v), want %s", got, o.err, tc.code)
			}
			if len(effects) != tc.effects {
				t.Fatalf("%d effects, want %d", len(effects), tc.effects)
			}
			if c := tc.lk.Card; c != nil && (c.Cash != tc.cash || c.Held != tc.held) {
				t.Fatalf("card cash %d held %d, want %d and %d", c.Cash, c.Held, tc.cash, tc.held)
			}
			if (tc.code == "00") != (o.authCode != "") {
				t.Fatalf("approval code %q for %s", o.authCode, tc.code)
			}
		})
	}
}

func TestCoverFromFund(t *testing.T) {
	const quota = 1000000
	lim := config.Limits{RedemptionQuota: quota}
	owing := card(0, 100000)
	owing.Overdraft = -500
	for _, tc := range []struct {
		name   string
		c      *ledger.Card
		amount int64
		want   error // nil: the shortfall is redeemed
		redeem int64
	}{
		{"shortfall covered", card(2000, 500000), 30000, nil, 28000},
		{"what the card owes is redeemed too", owing, 2000, nil, 2500},
		{"fund short", card(2000, 100), 30000, ledger.ErrInsufficientFunds, 0},
		{"fund exactly enough", card(2000, 28000), 30000, nil, 28000},
		{"quota short", func() *ledger.Card { c := card(0, 500000); c.RedeemedToday = quota - 100; return c }(), 200, errOverQuota, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := coverFromFund(tc.c, tc.amount, lim)
			var need *needsRedemption
			switch {
			case errors.As(err, &need):
				if tc.want != nil || need.amount != tc.redeem {
					t.Fatalf("redeem %d, want %v/%d", need.amount, tc.want, tc.redeem)
				}
			case !errors.Is(err, tc.want) || tc.want == nil:
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReversalStands(t *testing.T) {
	amount := func(n int64) *int64 { return &n }
	approved := func(txn string, amount int64, hold *ledger.Hold) *ledger.Original {
		return &ledger.Original{ID: 9, CardID: 7, TxnType: txn, Amount: amount, Stands: amount, State: ledger.StateAnswered, ResponseCode: "00", Hold: hold}
	}
	for _, tc := range []struct {
		name    string
		orig    *ledger.Original
		actual  *int64 // DE95's actual amount; nil: a full reversal
		stands  int64
		effects int
		cash    int64 // the card's cash after, from 10,000
		held    int64 // from the hold's remaining amount
	}{
		{"full reversal of a debit credits it back", approved(ledger.KindPurchase, 3000, nil), nil, 0, 1, 13000, 0},
		{"partial reversal credits the difference", approved(ledger.KindPurchase, 3000, nil), amount(1000), 1000, 1, 12000, 0},
		{"DE95 above the original is capped: nothing moves", approved(ledger.KindPurchase, 3000, nil), amount(5000), 3000, 0, 10000, 0},
		{"a negative DE95 stands for nothing", approved(ledger.KindCash, 3000, nil), amount(-1), 0, 1, 13000, 0},
		{"a refund reversed is debited back", approved(ledger.KindRefund, 3000, nil), nil, 0, 1, 7000, 0},
		{"a deposit reversed is debited back", approved(ledger.KindDeposit, 3000, nil), nil, 0, 1, 7000, 0},
		{"an active hold is released", approved(ledger.KindPurchase, 3000, &ledger.Hold{ID: 3, Amount: 3000, Remaining: 3000, State: ledger.HoldActive}), nil, 0, 1, 10000, 0},
		{"an active hold is reduced", approved(ledger.KindPurchase, 3000, &ledger.Hold{ID: 3, Amount: 3000, Remaining: 3000, State: ledger.HoldActive}), amount(1000), 1000, 1, 10000, 1000},
		{"a captured hold moves nothing: the completion is reversed", approved(ledger.KindPurchase, 3000, &ledger.Hold{ID: 3, Amount: 3000, State: ledger.HoldCaptured}), nil, 0, 0, 10000, 0},
		{"a released hold moves nothing", approved(ledger.KindPurchase, 3000, &ledger.Hold{ID: 3, Amount: 3000, State: ledger.HoldReleased}), nil, 0, 0, 10000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &iso.Request{Actual: tc.actual}
			stands := standsAfter(tc.orig, r)
			if stands != tc.stands {
				t.Fatalf("stands %d, want %d", stands, tc.stands)
			}
			c := card(10000, 0)
			if h := tc.orig.Hold; h != nil && h.State == ledger.HoldActive {
				c.Held = h.Remaining
			}
			effects := reverse(c, tc.orig, tc.orig.Stands-stands)
			if len(effects) != tc.effects {
				t.Fatalf("%d effects, want %d", len(effects), tc.effects)
			}
			if c.Cash != tc.cash || c.Held != tc.held {
				t.Fatalf("cash %d held %d, want %d and %d", c.Cash, c.Held, tc.cash, tc.held)
			}
		})
	}
}

// TestResponseCodes is the README's response-code table, by the reason
// each code is sent for.
func TestResponseCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code string
	}{
		{nil, "00"},
		{errInvalidTransaction, "12"},
		{errReversedBefore, "12"},
		{errInvalidAmount, "13"},
		{errWrongCurrency, "13"},
		{ledger.ErrUnknownCard, "14"},
		{iso.ErrFormat, "30"},
		{&iso.FieldError{Field: 4, Reason: "not a number"}, "30"},
		{ledger.ErrInsufficientFunds, "51"},
		{errExpired, "54"},
		{errBlocked, "57"},
		{errOverQuota, "61"},
		{ledger.ErrQuotaExceeded, "61"},
		{errOverTxnLimit, "61"},
		{ErrUnavailable, "91"},
		{iso.ErrUnavailable, "91"},
		{errDeadline, "91"},
		{ledger.ErrFenced, "91"},
		{iso.ErrUnroutable, "92"},
		{errKeyReused, "94"},
		{iso.ErrBadMAC, "A0"},
		{iso.ErrNoMAC, "A0"},
		{errors.New("anything else"), "96"},
	} {
		if got := responseCode(tc.err); got != tc.code {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.code)
		}
	}
}
