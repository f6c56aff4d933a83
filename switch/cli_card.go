package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
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
		Args: noArgs,
	}
	c.PersistentFlags().StringVar(&f.admin, "admin", "http://127.0.0.1:8080", "admin API of a running switch")
	c.PersistentFlags().StringVar(&f.pan, "pan", "", "card number (required)")
	c.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print the admin API's JSON")

	add := &cobra.Command{
		Use:     "add --pan PAN [--balance 100.00] [--fund 5000.00]",
		Short:   "Issue a card with opening cash and fund balances",
		Example: "  goldcard card add --pan 6228480000000001 --balance 100.00 --fund 5000.00",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			body := map[string]any{"pan": f.pan, "currency": f.currency}
			for name, v := range map[string]string{"balance": f.balance, "fund_balance": f.fund} {
				n, err := parseAmount(v)
				if err != nil {
					return usageError{fmt.Errorf("--%s: %w", strings.TrimSuffix(name, "_balance"), err)}
				}
				body[name] = n
			}
			return cardCall(c, f, http.MethodPost, "/v1/cards", body, http.StatusCreated)
		},
	}
	add.Flags().StringVar(&f.balance, "balance", "0.00", "opening cash balance")
	add.Flags().StringVar(&f.fund, "fund", "0.00", "opening fund balance")
	add.Flags().StringVar(&f.currency, "currency", "156", "ISO 4217 numeric currency")

	show := &cobra.Command{
		Use:   "show --pan PAN",
		Short: "Show a card's balances",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return cardCall(c, f, http.MethodGet, "/v1/cards/"+f.pan, nil, http.StatusOK)
		},
	}
	status := func(use, short, to string) *cobra.Command {
		return &cobra.Command{
			Use: use + " --pan PAN", Short: short, Args: noArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				return cardCall(c, f, http.MethodPut, "/v1/cards/"+f.pan+"/status", map[string]string{"status": to}, http.StatusOK)
			},
		}
	}
	c.AddCommand(add, show,
		status("block", "Block a card: its authorisations are declined with 57", "blocked"),
		status("unblock", "Unblock a card", "active"))
	return c
}

// cardCall sends one admin request and prints the card it returns.
func cardCall(c *cobra.Command, f cardFlags, method, path string, body any, want int) error {
	if f.pan == "" {
		return usageError{fmt.Errorf("--pan is required (see %s --help)", c.CommandPath())}
	}
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
	fmt.Fprintf(out, "card       %s (%s, currency %s)\nbalance    %s\navailable  %s\nheld       %s\nfund       %s\n",
		v.PAN, v.Status, v.Currency, formatAmount(v.Balance), formatAmount(v.Available), formatAmount(v.Held), formatAmount(v.FundBalance))
	return nil
}

// adminFailure is the error an admin API answer with an unexpected status
// stands for: its reason, where it gives one.
func adminFailure(raw []byte, status int) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s (HTTP %d)", e.Error, status)
	}
	return fmt.Errorf("admin API answered HTTP %d: %s", status, bytes.TrimSpace(raw))
}

// adminCall sends a JSON request to a switch's admin API.
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
		return nil, 0, usageError{fmt.Errorf("--admin: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	creds, err := adminClient()
	if err != nil {
		return nil, 0, err
	}
	resp, err := creds.do(http.DefaultClient, req)
	if err != nil {
		return nil, 0, fmt.Errorf("reaching the switch's admin API at %s (is goldcard serve running?): %w", base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return raw, resp.StatusCode, err
}
