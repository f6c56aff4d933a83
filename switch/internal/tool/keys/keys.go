// Package keys is goldcard keys: the ledger's data keys, their rotation,
// and rewrapping them after a rotation of the key-encryption key, through
// a running switch's admin API.
package keys

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

type flags struct {
	admin  string
	asJSON bool
}

// Command is goldcard keys and its subcommands status, rotate and rewrap.
func Command() *cobra.Command {
	var f flags
	c := &cobra.Command{
		Use:   "keys",
		Short: "Show and rotate the keys card data is sealed under",
		Long: `Show and rotate the keys card data is sealed under.

PANs and stored responses are sealed (AES-256-GCM) under a data key; data
keys are kept in the database wrapped under the key-encryption key (KEK)
each switch is given at start (--kek-file or $GOLDCARD_KEK). Changes name
their operator: $GOLDCARD_OPERATOR on a loopback API without credentials,
else an operator's own token.

Rotating the KEK: give every switch the new KEK first and the old one after
it (one per line), restart them one at a time, run goldcard keys rewrap,
then drop the old KEK.`,
		Args: cli.NoArgs,
	}
	c.PersistentFlags().StringVar(&f.admin, "admin", "http://127.0.0.1:8080", "admin API of a running switch")
	c.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print the admin API's JSON")

	status := &cobra.Command{
		Use:   "status",
		Short: "List the data keys: which is in use, and how far earlier rows are sealed under it",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := call(c, f, http.MethodGet, "/v1/keys")
			if err != nil || f.asJSON {
				return err
			}
			var st struct {
				KEK  string           `json:"kek"`
				Keys []ledger.DataKey `json:"keys"`
				Job  *struct {
					State     string `json:"state"`
					Attempts  int    `json:"attempts"`
					LastError string `json:"last_error"`
				} `json:"job"`
			}
			if err := json.Unmarshal(raw, &st); err != nil {
				return fmt.Errorf("reading the admin API's answer: %w", err)
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "the switch wraps keys under KEK %s\n", st.KEK)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tPURPOSE\tKEK\tCREATED\tIN USE\tEARLIER ROWS")
			for _, k := range st.Keys {
				inUse, rows := "", "-"
				if k.Active {
					inUse = "yes"
					rows = fmt.Sprintf("sealing: cards to id %d, requests to id %d", k.ResealedCards, k.ResealedRequests)
					if k.ResealedCards < 0 {
						rows = fmt.Sprintf("sealing: every card, requests to id %d", k.ResealedRequests)
					}
					if k.ResealedAt != nil {
						rows = "all sealed under it " + k.ResealedAt.Local().Format(time.DateTime)
					}
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Purpose, k.KEK, k.CreatedAt.Local().Format(time.DateTime), inUse, rows)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if j := st.Job; j != nil && j.State != "done" {
				fmt.Fprintf(out, "sealing job: %s, attempt %d", j.State, j.Attempts)
				if j.LastError != "" {
					fmt.Fprintf(out, ": %s", j.LastError)
				}
				fmt.Fprintln(out)
			}
			return nil
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new data key: every switch seals new rows under it at once, earlier rows follow in batches",
		Example: "  GOLDCARD_OPERATOR=li.wei goldcard keys rotate\n" +
			"  goldcard keys status",
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := call(c, f, http.MethodPost, "/v1/keys/rotate")
			if err != nil || f.asJSON {
				return err
			}
			var ch struct {
				Key      int32            `json:"key"`
				Switches []client.Applied `json:"switches"`
			}
			if err := json.Unmarshal(raw, &ch); err != nil {
				return fmt.Errorf("reading the admin API's answer: %w", err)
			}
			out := c.OutOrStdout()
			fmt.Fprintf(out, "data key %d is in use; rows sealed under earlier keys are being sealed again (goldcard keys status)\n", ch.Key)
			client.PrintApplied(out, ch.Switches)
			return nil
		},
	}
	rewrap := &cobra.Command{
		Use:   "rewrap",
		Short: "Wrap every data key and bank MAC key again under the switch's current KEK",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := call(c, f, http.MethodPost, "/v1/keys/rewrap")
			if err != nil || f.asJSON {
				return err
			}
			var rw struct {
				KEK      string   `json:"kek"`
				DataKeys int      `json:"data_keys"`
				Banks    []string `json:"banks"`
			}
			if err := json.Unmarshal(raw, &rw); err != nil {
				return fmt.Errorf("reading the admin API's answer: %w", err)
			}
			banks := "none"
			if len(rw.Banks) > 0 {
				banks = strings.Join(rw.Banks, ", ")
			}
			fmt.Fprintf(c.OutOrStdout(), "wrapped under KEK %s: %d data key(s); MAC keys of %s\n", rw.KEK, rw.DataKeys, banks)
			return nil
		},
	}
	c.AddCommand(status, rotate, rewrap)
	return c
}

// call sends one admin request; with --json it prints the answer as is.
// A rotation the switches did not all report (202) prints and fails.
func call(c *cobra.Command, f flags, method, path string) ([]byte, error) {
	raw, status, err := client.Admin(c.Context(), f.admin, method, path, nil)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK:
	case http.StatusAccepted:
		var partial struct {
			Key      int32            `json:"key"`
			Switches []client.Applied `json:"switches"`
			Error    string           `json:"error"`
		}
		_ = json.Unmarshal(raw, &partial)
		client.PrintApplied(c.OutOrStdout(), partial.Switches)
		return nil, fmt.Errorf("data key %d is made and in use on this switch, but not every switch said it follows: %s", partial.Key, partial.Error)
	default:
		return nil, client.AdminFailure(raw, status)
	}
	if f.asJSON {
		_, err := c.OutOrStdout().Write(append(raw, '\n'))
		return raw, err
	}
	return raw, nil
}
