package admin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestCardPassword: an operator sets a cardholder's password through the
// admin API; what the ledger keeps is its bcrypt hash, which the cardholder
// must change at first sign-in, and neither the password nor the hash is
// in the log. Bad input is refused with a reason.
func TestCardPassword(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	const pan, password = "6228480000007401", "Jin-Ka 2026!"
	d.AddCard(pan, 100, 0)
	id := d.CardID(pan)
	put := func(path, body, operator string) int {
		req, _ := http.NewRequest(http.MethodPut, "http://"+d.Admin+path, strings.NewReader(body))
		if operator != "" {
			req.Header.Set("Goldcard-Operator", operator)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, body, operator string
		want                 int
	}{
		{"/v1/cards/" + id + "/password", `{"password": "` + password + `"}`, "", http.StatusBadRequest},
		{"/v1/cards/" + id + "/password", `{"password": "short"}`, "li.wei", http.StatusBadRequest},
		{"/v1/cards/" + id + "/password", `{"password": "` + strings.Repeat("x", 73) + `"}`, "li.wei", http.StatusBadRequest},
		{"/v1/cards/crd_000000000000000000000000/password", `{"password": "` + password + `"}`, "li.wei", http.StatusNotFound},
		{"/v1/cards/" + id + "/password", `{"password": "` + password + `"}`, "li.wei", http.StatusOK},
	} {
		if got := put(tc.path, tc.body, tc.operator); got != tc.want {
			t.Errorf("PUT %s %s: HTTP %d, want %d", tc.path, tc.body, got, tc.want)
		}
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var hash, setBy string
	var mustChange bool
	if err := conn.QueryRow(ctx, `SELECT p.hash, p.must_change, p.set_by FROM card_passwords p JOIN cards c ON c.id = p.card_id
		WHERE c.ref = $1`, id).Scan(&hash, &mustChange, &setBy); err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil || !mustChange || setBy != "li.wei" {
		t.Fatalf("kept %q must_change %v set_by %q", hash, mustChange, setBy)
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost < 12 {
		t.Fatalf("bcrypt cost %d", cost)
	}
	if logs := d.Logs(); strings.Contains(logs, password) || strings.Contains(logs, hash) || !strings.Contains(logs, `"card password set"`) {
		t.Fatalf("log:\n%s", logs)
	}
}
