package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/cli"
)

type cardFlags struct {
	admin    string
	pan      string
	asJSON   bool
	currency string
	balance  string
	fund     string
}

func newCardCommand() *cobra.Command {
	var f cardFlags
	c := &cobra.Command{
		Use:   "card",
		Short: "Issue and inspect cards through a running switch's admin API",
		Long: `Issue and inspect cards through a running switch's admin API.

Amounts are written with two decimals (100.00); the switch keeps them as
integers in minor units.`,
		Args: cli.NoArgs,
	}
	c.PersistentFlags().StringVar(&f.admin, "admin", "http://127.0.0.1:8080", "admin API of a running switch")
	c.PersistentFlags().StringVar(&f.pan, "pan", "", "card number (required)")
	c.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print the admin API's JSON")

	add := &cobra.Command{
		Use:     "add --pan PAN [--balance 100.00] [--fund 5000.00]",
		Short:   "Issue a card with opening cash and fund balances",
		Example: "  goldcard card add --pan 6228480000000001 --balance 100.00 --fund 5000.00",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := needPAN(c, f); err != nil {
				return err
			}
			body := map[string]any{"pan": f.pan, "currency": f.currency}
			for name, v := range map[string]string{"balance": f.balance, "fund_balance": f.fund} {
				n, err := parseAmount(v)
				if err != nil {
					return cli.UsageError{Err: fmt.Errorf("--%s: %w", strings.TrimSuffix(name, "_balance"), err)}
				}
				body[name] = n
			}
			return printCard(c, f, http.MethodPost, "/v1/cards", body, http.StatusCreated)
		},
	}
	add.Flags().StringVar(&f.balance, "balance", "0.00", "opening cash balance")
	add.Flags().StringVar(&f.fund, "fund", "0.00", "opening fund balance")
	add.Flags().StringVar(&f.currency, "currency", "156", "ISO 4217 numeric currency")

	show := &cobra.Command{
		Use:   "show --pan PAN",
		Short: "Show a card's balances",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return cardCall(c, f, http.MethodGet, "", nil, http.StatusOK)
		},
	}
	status := func(use, short, to string) *cobra.Command {
		return &cobra.Command{
			Use: use + " --pan PAN", Short: short, Args: cli.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return cardCall(c, f, http.MethodPut, "/status", map[string]string{"status": to}, http.StatusOK)
			},
		}
	}
	c.AddCommand(add, show,
		status("block", "Block a card: its authorisations are declined with 57", "blocked"),
		status("unblock", "Unblock a card", "active"))
	return c
}

// cardCall finds the card --pan names and sends it one admin request to
// path under /v1/cards/{id}, printing the card it returns. The PAN goes
// in a search body, never in a URL.
func cardCall(c *cobra.Command, f cardFlags, method, path string, body any, want int) error {
	if err := needPAN(c, f); err != nil {
		return err
	}
	id, err := findCard(c.Context(), f.admin, f.pan)
	if err != nil {
		return err
	}
	return printCard(c, f, method, "/v1/cards/"+url.PathEscape(id)+path, body, want)
}

// needPAN refuses a card command without --pan.
func needPAN(c *cobra.Command, f cardFlags) error {
	if f.pan == "" {
		return cli.UsageError{Err: fmt.Errorf("--pan is required (see %s --help)", c.CommandPath())}
	}
	return nil
}

// errNoCard is a PAN no card has.
var errNoCard = errors.New("no card")

// findCard returns the id of the card with the PAN.
func findCard(ctx context.Context, admin, pan string) (string, error) {
	raw, status, err := adminCall(ctx, admin, http.MethodPost, "/v1/cards/search", map[string]string{"pan": pan})
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", adminFailure(raw, status)
	}
	var found struct {
		Cards []cardView `json:"cards"`
	}
	if err := json.Unmarshal(raw, &found); err != nil {
		return "", fmt.Errorf("reading admin API answer: %w", err)
	}
	if len(found.Cards) == 0 {
		return "", fmt.Errorf("%w %s", errNoCard, iso.MaskPAN(pan))
	}
	return found.Cards[0].ID, nil
}

// printCard sends one admin request and prints the card it returns.
func printCard(c *cobra.Command, f cardFlags, method, path string, body any, want int) error {
	raw, status, err := adminCall(c.Context(), f.admin, method, path, body)
	if err != nil {
		return err
	}
	if status != want {
		return adminFailure(raw, status)
	}
	out := c.OutOrStdout()
	if f.asJSON {
		_, err := out.Write(raw)
		return err
	}
	var v cardView
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("reading admin API answer: %w", err)
	}
	fmt.Fprintf(out, "card       %s (%s, currency %s)\nid         %s\nbalance    %s\navailable  %s\nheld       %s\nfund       %s\n",
		v.PAN, v.Status, v.Currency, v.ID, formatAmount(v.Balance), formatAmount(v.Available), formatAmount(v.Held), formatAmount(v.FundBalance))
	return nil
}

// adminFailure is the error an admin API answer with an unexpected status
// stands for: its reason, where it gives one. What is not the switch's
// own answer (a proxy's page) may quote the request, so digit runs are
// masked.
func adminFailure(raw []byte, status int) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s (HTTP %d)", iso.MaskPANs(e.Error), status)
	}
	return fmt.Errorf("admin API answered HTTP %d: %s", status, iso.MaskPANs(string(bytes.TrimSpace(raw))))
}

// adminCall sends a JSON request to a switch's admin API. Its errors name
// the method and path (digit runs masked) but never the body or the whole
// URL, which net/http's errors would quote.
func adminCall(ctx context.Context, base, method, path string, body any) ([]byte, int, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, 0, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, rd)
	if err != nil {
		return nil, 0, cli.UsageError{Err: fmt.Errorf("--admin %s: %w", iso.MaskPANs(base), urlErrorCause(err))}
	}
	req.Header.Set("Content-Type", "application/json")
	creds, err := adminClient()
	if err != nil {
		return nil, 0, err
	}
	resp, err := creds.do(http.DefaultClient, req)
	if err != nil {
		return nil, 0, fmt.Errorf("reaching the switch's admin API at %s (is goldcard serve running?): %s %s: %w",
			iso.MaskPANs(base), method, iso.MaskPANs(path), urlErrorCause(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("reading the admin API's answer to %s %s: %w", method, iso.MaskPANs(path), urlErrorCause(err))
	}
	return raw, resp.StatusCode, nil
}

// urlErrorCause is err without the *url.Error around it, which quotes the
// request's URL.
func urlErrorCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
