package config_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/config"
)

// decodeCases are config values and what DecodeValue says of them; they
// also seed FuzzDecodeValue.
var decodeCases = []struct {
	key, value string
	wantErr    string // substring; empty means accepted
}{
	{"banks/acme", `{"code":"acme","listen":":9001","dialect":"iso87-ascii","header":"ascii4","auth_timeout":"2s","safety_margin":"200ms","enabled":true}`, ""},
	{"banks/acme", `{"listen":":9001"}`, ""},
	{"banks/acme", `{"code":"acme","listen":":9001","colour":"red"}`, "unknown field"},
	{"banks/acme", `{"code":"other","listen":":9001"}`, "differs"},
	{"banks/acme", `{"listen":":9001","auth_timeout":"-1s"}`, "auth_timeout must be positive"},
	{"banks/acme", `{"listen":":9001","txn_key":["acquirer","stan","transmitted","terminal"]}`, ""},
	{"banks/acme", `{"listen":":9001","txn_key":["terminal","stan","rrn"]}`, ""},
	{"banks/acme", `{"listen":":9001","txn_key":["stan","rrn"]}`, "acquirer or terminal"},
	{"banks/acme", `{"listen":":9001","txn_key":["acquirer","terminal","rrn"]}`, "must name stan"},
	{"banks/acme", `{"listen":":9001","txn_key":["acquirer","stan","terminal"]}`, "STANs are used again"},
	{"banks/acme", `{"listen":":9001","txn_key":["terminal","stan","rrn","rrn"]}`, "named twice"},
	{"banks/acme", `{"listen":":9001","txn_key":["terminal","stan","rrn","pan"]}`, "not a field"},
	{"banks/acme", `{"listen":":9001","txn_key":[]}`, "must name stan"},
	{"banks/acme", `{"listen":":9001","auth_timeout":3}`, "duration must be a string"},
	{"banks/acme", `{"listen":":9001","auth_timeout":"1s","safety_margin":"2s"}`, "leaves no time"},
	{"banks/acme", `{"listen":":9001","header":"bcd2"}`, "header"},
	{"banks/acme", `{"listen":"9001"}`, "host:port"},
	{"banks/acme", `{"listen":":9001","allowed_cidrs":["10.0.0.0/33"]}`, "allowed_cidrs"},
	{"banks/acme", `{"listen":":9001","acquirers":["12AB"]}`, "acquirer"},
	{"banks/acme", `{"listen":":9001","max_connections":0}`, "max_connections"},
	{"banks/acme", `{"listen":":9001"} {"x":1}`, "unexpected data"},
	{"banks/ACME", `{"listen":":9001"}`, "unknown key"},
	{"dialects/custom", `{"name":"x","fields":{}}`, ""},
	{"dialects/custom", `{"name":`, "not JSON"},
	{"limits", `{"redemption_quota":500000,"atm_per_txn":200000,"pos_per_txn":0,"hold_validity":"72h"}`, ""},
	{"limits", `{"redemption_quota":-1}`, "redemption_quota"},
	{"limits", `{"hold_validity":"0s"}`, "hold_validity"},
	{"fund", `{"provider":"gateway","url":"http://fund:9090"}`, ""},
	{"fund", `{"provider":"gateway"}`, "url"},
	{"fund", `{"provider":"bank"}`, "provider"},
	{"fund", `{"simulator_fail_rate":2}`, "fail_rate"},
	{"sweep", `{"threshold":100000,"time":"15:00","time_zone":"Asia/Shanghai"}`, ""},
	{"sweep", `{"time":"25:00"}`, "HH:MM"},
	{"sweep", `{"time_zone":"Mars/Olympus"}`, "time zone"},
	{"calendar/2026", `{"holidays":["2026-01-01","2026-10-01"]}`, ""},
	{"calendar/2026", `{"holidays":["2025-12-31"]}`, "in 2026"},
	{"calendar/20x6", `{"holidays":[]}`, "unknown key"},
	{"colours", `{}`, "unknown key"},
}

func TestDecodeValue(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.key+" "+tc.value, func(t *testing.T) {
			_, err := config.DecodeValue(tc.key, []byte(tc.value))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, want an error about %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestSnapshotValidate(t *testing.T) {
	builtin := map[string]json.RawMessage{"iso87-ascii": json.RawMessage(`{}`), "iso87-ascii-binbitmap": json.RawMessage(`{}`)}
	build := func(name string, spec []byte) error {
		if strings.Contains(string(spec), "broken") {
			return errors.New("does not build")
		}
		return nil
	}
	bank := func(code, listen, dialect, acquirers string) string {
		acq := "[]"
		if acquirers != "" {
			acq = `["` + strings.ReplaceAll(acquirers, ",", `","`) + `"]`
		}
		return `{"code":"` + code + `","listen":"` + listen + `","dialect":"` + dialect + `","acquirers":` + acq + `}`
	}
	tests := []struct {
		name    string
		kvs     map[string]string
		wantErr string
	}{
		{"defaults", map[string]string{}, ""},
		{"two banks, two ports", map[string]string{"banks/a": bank("a", ":9001", "iso87-ascii", ""), "banks/b": bank("b", ":9002", "iso87-ascii-binbitmap", "")}, ""},
		{"shared port by acquirer", map[string]string{"banks/a": bank("a", ":9001", "iso87-ascii", "100"), "banks/b": bank("b", ":9001", "iso87-ascii", "200")}, ""},
		{"shared port, one catch-all", map[string]string{"banks/a": bank("a", ":9001", "iso87-ascii", ""), "banks/b": bank("b", ":9001", "iso87-ascii", "200")}, ""},
		{"shared port, two catch-alls", map[string]string{"banks/a": bank("a", ":9001", "iso87-ascii", ""), "banks/b": bank("b", ":9001", "iso87-ascii", "")}, "at most one"},
		{"shared port, one acquirer twice", map[string]string{"banks/a": bank("a", ":9001", "iso87-ascii", "100"), "banks/b": bank("b", ":9001", "iso87-ascii", "0100")}, "both claim"},
		{"shared port, two dialects", map[string]string{"banks/a": bank("a", ":9001", "iso87-ascii", "100"), "banks/b": bank("b", ":9001", "iso87-ascii-binbitmap", "200")}, "dialect and header"},
		{"unknown dialect", map[string]string{"banks/a": bank("a", ":9001", "ebcdic", "")}, "does not exist"},
		{"dialect from etcd", map[string]string{"dialects/mine": `{"ok":1}`, "banks/a": bank("a", ":9001", "mine", "")}, ""},
		{"broken dialect", map[string]string{"dialects/mine": `{"broken":1}`}, "does not build"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kvs := map[string][]byte{}
			for k, v := range tc.kvs {
				kvs[k] = []byte(v)
			}
			s, err := config.Build(7, kvs, builtin)
			if err == nil {
				err = s.Validate(build)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one about %q", err, tc.wantErr)
			}
		})
	}
}

func TestOverlappingListeners(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		ok   bool
	}{
		{":9000", "0.0.0.0:9000", false},
		{":9000", "127.0.0.1:9000", false},
		{"127.0.0.1:9000", "localhost:9000", false},
		{"127.0.0.1:9000", "127.0.0.2:9000", true},
		{":9000", ":9001", true},
		{"127.0.0.1:0", ":0", true},
	} {
		kvs := map[string][]byte{
			"banks/a": []byte(`{"listen":"` + tc.a + `"}`),
			"banks/b": []byte(`{"listen":"` + tc.b + `"}`),
		}
		s, err := config.Build(1, kvs, map[string]json.RawMessage{"iso87-ascii": json.RawMessage(`{}`)})
		if err == nil {
			err = s.Validate(nil)
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s and %s: %v", tc.a, tc.b, err)
		}
	}
	for _, bad := range []string{"x:y", ":99999", ":-1", "fund.example:9000", "9000"} {
		if _, err := config.DecodeValue("banks/a", []byte(`{"listen":"`+bad+`"}`)); err == nil {
			t.Errorf("listen %q accepted", bad)
		}
	}
}
