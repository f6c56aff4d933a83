// Package card is goldcard card: issue, show, block and unblock cards
// through a running switch's admin API.
package card

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

type flags struct {
	admin    string
	pan      string
	asJSON   bool
	currency string
	balance  string
	fund     string
}

// Command is goldcard card and its subcommands add, show, block and unblock.
func Command() *cobra.Command {
	var f flags
	c := &cobra.Command{
		Use:   "card",
		Short: "Issue and inspect cards through a running switch's admin API",
		Long: `Issue and inspect cards through a running switch's admin API.

Amounts are written with two decimals (100.00); the switch keeps them as
integers in minor units.`,
		Args: cli.NoArgs,
	}
	c.PersistentFlags().StringVar(&f.admin, "admin", "http://127.0.0.1:8080", "admin API of a running switch")
	c.PersistentFlags().StringVar(&f.pan, "pan", "", "card number (required); - reads it from standard input, keeping it out of the process list and shell history")
	c.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print the admin API's JSON")

	add := &cobra.Command{
		Use:     "add --pan PAN [--balance 100.00] [--fund 5000.00]",
		Short:   "Issue a card with opening cash and fund balances",
		Example: "  goldcard card add --pan 6228480000000001 --balance 100.00 --fund 5000.00",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := needPAN(c, &f); err != nil {
				return err
			}
			body := map[string]any{"pan": f.pan, "currency": f.currency}
			for name, v := range map[string]string{"balance": f.balance, "fund_balance": f.fund} {
				n, err := client.ParseAmount(v)
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
func cardCall(c *cobra.Command, f flags, method, path string, body any, want int) error {
	if err := needPAN(c, &f); err != nil {
		return err
	}
	id, err := findCard(c.Context(), f.admin, f.pan)
	if err != nil {
		return err
	}
	return printCard(c, f, method, "/v1/cards/"+url.PathEscape(id)+path, body, want)
}

// needPAN refuses a card command without --pan, and reads the PAN from
// standard input for --pan -. A PAN read is never repeated in an error.
func needPAN(c *cobra.Command, f *flags) error {
	if f.pan == "" {
		return cli.UsageError{Err: fmt.Errorf("--pan is required (see %s --help)", c.CommandPath())}
	}
	if f.pan != "-" {
		return nil
	}
	line, err := bufio.NewReader(io.LimitReader(c.InOrStdin(), 64)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the card number from standard input: %w", err)
	}
	f.pan = strings.TrimSpace(line)
	if n := len(f.pan); n < 12 || n > 19 || strings.Trim(f.pan, "0123456789") != "" {
		return cli.UsageError{Err: errors.New("--pan -: standard input must hold a card number of 12 to 19 digits on its first line")}
	}
	return nil
}

// errNoCard is a PAN no card has.
var errNoCard = errors.New("no card")

// findCard returns the id of the card with the PAN.
func findCard(ctx context.Context, admin, pan string) (string, error) {
	raw, status, err := client.Admin(ctx, admin, http.MethodPost, "/v1/cards/search", map[string]string{"pan": pan})
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", client.AdminFailure(raw, status)
	}
	var found struct {
		Cards []client.Card `json:"cards"`
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
func printCard(c *cobra.Command, f flags, method, path string, body any, want int) error {
	raw, status, err := client.Admin(c.Context(), f.admin, method, path, body)
	if err != nil {
		return err
	}
	if status != want {
		return client.AdminFailure(raw, status)
	}
	out := c.OutOrStdout()
	if f.asJSON {
		_, err := out.Write(raw)
		return err
	}
	var v client.Card
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("reading admin API answer: %w", err)
	}
	fmt.Fprintf(out, "card       %s (%s, currency %s)\nid         %s\nbalance    %s\navailable  %s\nheld       %s\nfund       %s\n",
		v.PAN, v.Status, v.Currency, v.ID, client.FormatAmount(v.Balance), client.FormatAmount(v.Available), client.FormatAmount(v.Held), client.FormatAmount(v.FundBalance))
	return nil
}
