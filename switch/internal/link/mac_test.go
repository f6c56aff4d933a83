package link_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestMACAndSignOn: a bank that signs its messages (X9.19) and must sign
// on. Before sign-on a debit gets 91; a wrong or missing MAC gets A0 and
// posts nothing; the right MAC is approved and the response's MAC
// verifies. A key change is taken without restart, the old key accepted
// (and answered under) for the overlap only. Keys are never logged nor
// shown by the admin API.
func TestMACAndSignOn(t *testing.T) {
	d := switchtest.Start(t)
	const pan = "6228480000000901"
	d.AddCard(pan, 100000, 0)

	const k1, k2 = "0123456789ABCDEFFEDCBA9876543210", "1F2E3D4C5B6A79880123456789ABCDEF"
	addr := switchtest.FreeAddr(t)
	putBank := func(key, overlap string) {
		t.Helper()
		cfg := fmt.Sprintf(`{"name":"Signing bank","listen":%q,"require_sign_on":true,"mac":{"algorithm":"x9.19","key":%q,"overlap":%q}}`, addr, key, overlap)
		if out, err := switchtest.CLI(t, cfg, "config", "put", "banks/signing", "-", "--etcd", d.Etcd); err != nil {
			t.Fatalf("config put: %v\n%s", err, out)
		}
	}
	putBank(k1, "5m")
	switchtest.WaitFor(t, "the signing bank's listener", func() bool { return d.MetricValue(`goldcard_connections{bank="signing",state="connected"}`) == 0 })

	dia, _ := iso.Builtin(iso.DefaultDialect)
	key := func(h string) *iso.MACKey {
		raw, _ := hex.DecodeString(h)
		k, err := iso.NewMACKey(iso.MACX919, raw)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	key1, key2, wrong := key(k1), key(k2), key("0123456789ABCDEF0123456789ABCDEF")
	sim := switchtest.NewBank(t, dia, nil, 400000)
	link := switchtest.DialRaw(t, addr)
	// send packs a request, signs it under k (nil: no MAC) and returns
	// the response, checking its MAC under want (nil: not checked).
	send := func(mti string, f map[int]string, k, want *iso.MACKey) map[int]string {
		t.Helper()
		m, err := client.NewMessage(dia, mti, sim.Fields(f))
		if err != nil {
			t.Fatal(err)
		}
		body, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if k != nil {
			if body, err = k.Sign(dia, body); err != nil {
				t.Fatal(err)
			}
		}
		raw := link.RoundTrip(t, body)
		resp, err := dia.Unpack(raw)
		if err != nil {
			t.Fatal(err)
		}
		if want != nil {
			if err := want.Verify(raw, resp); err != nil {
				t.Errorf("%s response MAC: %v", mti, err)
			}
		}
		return switchtest.FieldsOf(t, resp)
	}
	debit := map[int]string{2: pan, 3: "000000", 4: "000000001000"}

	switchtest.WantCode(t, send("0200", debit, key1, key1), "91") // not signed on
	switchtest.WantCode(t, send("0800", map[int]string{70: "001"}, key1, key1), "00")
	// Refusals of a bad MAC carry none: a peer without the key gets no
	// MAC of a message it chose.
	for _, k := range []*iso.MACKey{wrong, nil} {
		r := send("0200", debit, k, nil)
		switchtest.WantCode(t, r, "A0")
		if _, signed := r[64]; signed {
			t.Errorf("an A0 answer carries a MAC: %v", r)
		}
	}
	switchtest.WantCard(t, d, pan, nil, 100000, 100000, 0)
	switchtest.WantCode(t, send("0200", debit, key1, key1), "00")
	switchtest.WantCard(t, d, pan, nil, 99000, 99000, 0)
	if v := d.MetricValue(`goldcard_mac_failures_total{bank="signing",reason="mismatch"}`); v != 1 {
		t.Errorf("MAC mismatches counted %v, want 1", v)
	}
	if v := d.MetricValue(`goldcard_mac_failures_total{bank="signing",reason="missing"}`); v != 1 {
		t.Errorf("missing MACs counted %v, want 1", v)
	}

	// A new key: the old one still works during the overlap, answered
	// under the key the request came with. The overlap starts when the
	// switch takes the change: after putBank starts, before it returns.
	const overlap = 2 * time.Second
	before := time.Now()
	putBank(k2, overlap.String())
	changed := time.Now()
	switchtest.WantCode(t, send("0200", debit, key2, key2), "00")
	balance := int64(98000)
	if sent := time.Now(); sent.Sub(before) < overlap {
		switchtest.WantCode(t, send("0200", debit, key1, key1), "00")
		balance -= 1000
	} else {
		t.Logf("the old key not tried within the overlap: %s after the change", sent.Sub(before))
	}
	time.Sleep(time.Until(changed.Add(overlap + 100*time.Millisecond)))
	switchtest.WantCode(t, send("0200", debit, key1, nil), "A0")
	switchtest.WantCode(t, send("0200", debit, key2, key2), "00")
	switchtest.WantCard(t, d, pan, nil, balance-1000, balance-1000, 0)

	var cfg map[string]any
	d.API("GET", "/v1/config", nil, &cfg)
	shown := fmt.Sprint(cfg)
	for _, k := range []string{k1, k2, strings.ToLower(k1), strings.ToLower(k2)} {
		if strings.Contains(shown, k) {
			t.Errorf("GET /v1/config shows a MAC key")
		}
	}
	d.AssertNoSecrets(pan, k1, k2, strings.ToLower(k1), strings.ToLower(k2))
}
