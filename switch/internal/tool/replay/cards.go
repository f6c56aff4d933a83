package replay

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/fixture"
)

// issueCards issues every card the sources name through the admin API.
// A card named twice is issued as first named; one that exists is left as
// it is, with a note.
func issueCards(ctx context.Context, admin string, sources []*fixture.Source, stderr io.Writer) error {
	seen := map[string]string{}
	existed := 0
	defer func() {
		if existed > 0 {
			fmt.Fprintf(stderr, "goldcard: %d of the %d cards existed and were left as they are: answers may differ from a fresh switch's\n", existed, len(seen))
		}
	}()
	for _, s := range sources {
		for _, card := range s.File.Cards {
			if first, ok := seen[card.PAN]; ok {
				if first != s.Label() {
					fmt.Fprintf(stderr, "goldcard: card %s is named by %s and %s; issued as %s has it\n", iso.MaskPAN(card.PAN), first, s.Label(), first)
				}
				continue
			}
			seen[card.PAN] = s.Label()
			created, err := issueCard(ctx, admin, card)
			if err != nil {
				return fmt.Errorf("%s: card %s: %w", s.Label(), iso.MaskPAN(card.PAN), err)
			}
			if !created {
				existed++
			}
		}
	}
	return nil
}

// issueCard issues one card; it reports false for a card that exists.
func issueCard(ctx context.Context, admin string, card fixture.Card) (bool, error) {
	raw, status, err := client.Admin(ctx, admin, http.MethodPost, "/v1/cards", map[string]any{
		"pan": card.PAN, "currency": cmp.Or(card.Currency, "156"), "balance": card.Balance, "fund_balance": card.FundBalance,
	})
	switch {
	case err != nil:
		return false, err
	case status == http.StatusConflict:
		return false, nil
	case status != http.StatusCreated:
		return false, client.AdminFailure(raw, status)
	}
	var issued client.Card
	if err := json.Unmarshal(raw, &issued); err != nil {
		return true, fmt.Errorf("reading the issued card: %w", err)
	}
	path := "/v1/cards/" + url.PathEscape(issued.ID)
	if card.Status != "" && card.Status != "active" {
		raw, status, err := client.Admin(ctx, admin, http.MethodPut, path+"/status", map[string]string{"status": card.Status})
		if err == nil && status != http.StatusOK {
			err = client.AdminFailure(raw, status)
		}
		if err != nil {
			return true, fmt.Errorf("setting status %s: %w", card.Status, err)
		}
	}
	if card.Sweep {
		raw, status, err := client.Admin(ctx, admin, http.MethodPut, path+"/sweep", map[string]bool{"enabled": true})
		if err == nil && status != http.StatusOK {
			err = client.AdminFailure(raw, status)
		}
		if err != nil {
			return true, fmt.Errorf("turning the sweep on: %w", err)
		}
	}
	return true, nil
}
