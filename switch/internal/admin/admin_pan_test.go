package admin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestAdminNoPAN: no answer of the admin API holds a full PAN, whatever
// the request (paths made up with a PAN where an id belongs, PANs in
// methods, fields and values, with and without credentials), and neither
// does the switch's log nor the CLI's output, even when it cannot reach
// the switch. Cards are named in paths by their id alone.
func TestAdminNoPAN(t *testing.T) {
	t.Parallel()
	const (
		token   = "pan-test-token-7731"
		pan     = "6228480000000777"
		unknown = "6228480000000778" // never issued
	)
	secrets := []string{pan, unknown, token}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	d := switchtest.Start(t, "--admin-token-file", tokenFile)
	base := "http://" + d.Admin

	answers := 0
	call := func(method, path, bearer, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		// Redirects are answers too: one would quote the path.
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var head bytes.Buffer
		_ = resp.Header.Write(&head)
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) || bytes.Contains(head.Bytes(), []byte(s)) {
				t.Errorf("%s %s answered %d with %s in it:\n%s%s", method, path, resp.StatusCode, s, head.String(), raw)
			}
		}
		answers++
		return resp.StatusCode, raw
	}
	want := func(method, path, body string, code int) []byte {
		t.Helper()
		got, raw := call(method, path, token, body)
		if got != code {
			t.Errorf("%s %s %s: HTTP %d, want %d: %s", method, path, body, got, code, raw)
		}
		return raw
	}

	// The card's own paths, by its id.
	var card client.Card
	raw := want("POST", "/v1/cards", `{"pan":"`+pan+`","balance":100000,"fund_balance":500000}`, http.StatusCreated)
	if err := json.Unmarshal(raw, &card); err != nil || !strings.HasPrefix(card.ID, "crd_") || card.PAN != "622848******0777" {
		t.Fatalf("issued card %s: %+v %v", raw, card, err)
	}
	id := "/v1/cards/" + card.ID
	var found struct{ Cards []client.Card }
	if err := json.Unmarshal(want("POST", "/v1/cards/search", `{"pan":"`+pan+`"}`, 200), &found); err != nil ||
		len(found.Cards) != 1 || found.Cards[0].ID != card.ID {
		t.Errorf("search: %+v %v", found, err)
	}
	var none map[string][]client.Card
	if err := json.Unmarshal(want("POST", "/v1/cards/search", `{"pan":"`+unknown+`"}`, 200), &none); err != nil || none["cards"] == nil || len(none["cards"]) != 0 {
		t.Errorf("search for a PAN no card has: %+v %v, want an empty list", none, err)
	}
	want("GET", id, "", 200)
	want("GET", id+"/transactions", "", 200)
	want("GET", id+"/sweep", "", 200)
	want("PUT", id+"/sweep", `{"enabled":true}`, 200)
	want("PUT", id+"/status", `{"status":"blocked"}`, 200)
	want("PUT", id+"/status", `{"status":"active"}`, 200)
	var order switchtest.Order
	if err := json.Unmarshal(want("POST", id+"/transfer-out", `{"amount":1000}`, 200), &order); err != nil || order.Card != card.ID {
		t.Errorf("transfer out: %+v %v", order, err)
	}
	var listed struct {
		ID     string
		Orders []switchtest.Order
	}
	if err := json.Unmarshal(want("GET", id+"/orders", "", 200), &listed); err != nil || listed.ID != card.ID || len(listed.Orders) != 1 || listed.Orders[0].Card != card.ID {
		t.Errorf("orders: %+v %v", listed, err)
	}
	if err := json.Unmarshal(want("GET", "/v1/orders/"+order.ID, "", 200), &order); err != nil || order.Card != card.ID || order.PAN != "622848******0777" {
		t.Errorf("order: %+v %v", order, err)
	}

	// What refuses the request must not quote it.
	for _, body := range []string{
		`{"pan":"` + pan + `"}`,                     // exists
		`{"pan":"` + pan + `x"}`,                    // malformed
		`{"pan":"` + pan + `1234"}`,                 // too long
		`{"pan":` + pan + `}`,                       // a number
		`{"pan":"` + unknown + `","` + pan + `":1}`, // an unknown field
		`{"pan":"` + unknown + `","currency":"` + pan + `"}`,
		`{"pan":"` + unknown + `"} ` + pan,
	} {
		call("POST", "/v1/cards", token, body)
		call("POST", "/v1/cards/search", token, body)
	}
	for _, body := range []string{`{"pan":"12ab"}`, `{"pan":"` + pan + `0000"}`, `{"` + pan + `":1}`} {
		if code, raw := call("POST", "/v1/cards/search", token, body); code != http.StatusBadRequest || !bytes.Contains(raw, []byte(`"error"`)) {
			t.Errorf("search %s: HTTP %d %s, want 400 with a reason", body, code, raw)
		}
	}
	call("PUT", id+"/status", token, `{"status":"`+pan+`"}`)
	call("PUT", id+"/sweep", token, `{"enabled":true,"threshold":`+pan+`0000}`)
	call("POST", id+"/transfer-out", token, `{"amount":"`+pan+`"}`)
	call("GET", id+"/orders?limit="+pan, token, "")
	call("GET", "/v1/timers?kind="+pan+"&state="+pan, token, "")

	// Paths with a PAN where the id belongs, or anywhere else.
	for _, p := range []string{pan, unknown} {
		for _, c := range []struct {
			method, path, body string
			code               int // with the token; 0 for any
		}{
			{"GET", "/v1/cards/" + p, "", 404},
			{"GET", "/v1/cards/" + p + "/nope", "", 404},
			{"GET", "/v1/cards/" + p + "/transactions", "", 404},
			{"GET", "/v1/cards/" + p + "/orders", "", 404},
			{"GET", "/v1/cards/" + p + "/sweep", "", 404},
			{"PUT", "/v1/cards/" + p + "/sweep", `{"enabled":true}`, 404},
			{"PUT", "/v1/cards/" + p + "/status", `{"status":"blocked"}`, 404},
			{"POST", "/v1/cards/" + p + "/transfer-out", `{"amount":1}`, 404},
			{"DELETE", "/v1/cards/" + p, "", 404},
			{"GET", "/v1/cards/" + p + "//nope", "", 404},
			{"GET", "/v1/cards/" + p + "/../nope", "", 404},
			{"GET", "/v1/cards/./" + p, "", 404},
			{"GET", "/v1/cards/crd_" + p, "", 404},
			{"GET", id + "/" + p, "", 404},
			{"GET", "/v1/orders/" + p, "", 404},
			{"GET", "/v1/config/dialects/" + p, "", 404},
			{"GET", "/v1/" + p, "", 404},
			{"GET", "/" + p, "", 404},
			{p, "/v1/cards", `{"pan":"` + p + `"}`, 404},
		} {
			for _, bearer := range []string{token, "", "not-" + token} {
				code, raw := call(c.method, c.path, bearer, c.body)
				if bearer == token && c.code != 0 && code != c.code {
					t.Errorf("%s %s: HTTP %d, want %d: %s", c.method, c.path, code, c.code, raw)
				}
			}
		}
	}
	call("GET", "/metrics", token, "")
	t.Logf("%d answers checked", answers)

	// The CLI, with the switch there.
	cli := func(admin string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(switchtest.Binary(t), append(args, "--admin", admin)...)
		cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_TOKEN="+token)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		for _, s := range secrets {
			if strings.Contains(out.String(), s) {
				t.Errorf("goldcard %s printed %s:\n%s", strings.Join(args, " "), s, out.String())
			}
		}
		return out.String(), err
	}
	for _, args := range [][]string{
		{"card", "show", "--pan", pan},
		{"card", "show", "--pan", pan, "--json"},
		{"card", "block", "--pan", pan},
		{"card", "unblock", "--pan", pan},
	} {
		if out, err := cli(base, args...); err != nil || !strings.Contains(out, card.ID) {
			t.Errorf("goldcard %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The card number from standard input, out of the process list.
	stdin := func(in string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(switchtest.Binary(t), append(args, "--admin", base)...)
		cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_TOKEN="+token)
		cmd.Stdin = strings.NewReader(in)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := stdin(pan+"\n", "card", "show", "--pan", "-"); err != nil || !strings.Contains(out, card.ID) || strings.Contains(out, pan) {
		t.Errorf("goldcard card show --pan -: %v\n%s", err, out)
	}
	if out, err := stdin(pan[:10]+"x"+pan[11:], "card", "show", "--pan", "-"); err == nil || strings.Contains(out, pan[:10]) || !strings.Contains(out, "12 to 19 digits") {
		t.Errorf("goldcard card show --pan - with no card number: %v\n%s", err, out)
	}
	if out, err := cli(base, "card", "add", "--pan", pan); err == nil || !strings.Contains(out, "622848******0777 exists") {
		t.Errorf("goldcard card add of an existing card: %v\n%s", err, out)
	}
	if out, err := cli(base, "card", "show", "--pan", unknown); err == nil || !strings.Contains(out, "no card 622848******0778") {
		t.Errorf("goldcard card show of a PAN no card has: %v\n%s", err, out)
	}

	d.AssertNoSecrets(secrets...)

	// The CLI, with no switch to answer: the port refuses, hangs up, or
	// holds the connection until the CLI gives up.
	refused, err := locks.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	hangUp := listen(t, func(c net.Conn) { c.Close() })
	hold := listen(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c); c.Close() })
	for name, admin := range map[string]string{
		"refused": fmt.Sprintf("127.0.0.1:%d", refused),
		"hang-up": hangUp,
		"timeout": hold,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			commands := [][]string{
				{"card", "show", "--pan", pan},
				{"card", "block", "--pan", pan},
				{"card", "add", "--pan", pan, "--balance", "1.00"},
			}
			if name == "timeout" {
				commands = commands[:1] // each waits out the CLI's 10 s
			}
			for _, args := range commands {
				out, err := cli(admin, args...)
				if err == nil || !strings.Contains(out, "reaching the switch's admin API") {
					t.Errorf("goldcard %s with no switch: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
		})
	}
}

// listen accepts connections on a free loopback port, handing each to
// serve, until the test ends; it returns the address.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}
