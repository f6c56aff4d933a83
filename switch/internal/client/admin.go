package client

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

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/cli"
)

// Card is a card as the admin API shows it: the same figures DE54
// carries, in minor units.
type Card struct {
	ID              string `json:"id"`
	PAN             string `json:"pan"` // masked
	Currency        string `json:"currency"`
	Status          string `json:"status"`
	Balance         int64  `json:"balance"`
	Available       int64  `json:"available"`
	Held            int64  `json:"held"`
	FundBalance     int64  `json:"fund_balance"`
	RedeemableToday int64  `json:"redeemable_today"`
	RedeemedToday   int64  `json:"redeemed_today"`
}

// Admin sends a JSON request to the admin API of a switch at base (a URL,
// or HOST:PORT for plain HTTP) with the environment's credentials, and
// returns the answer's body and status. Its errors name the method and
// path (digit runs masked) but never the body or the whole URL, which
// net/http's errors would quote.
func Admin(ctx context.Context, base, method, path string, body any) ([]byte, int, error) {
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
	creds, err := EnvCredentials()
	if err != nil {
		return nil, 0, err
	}
	resp, err := creds.Do(http.DefaultClient, req)
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

// Upload sends body (a file, streamed) to the admin API at base with the
// environment's credentials and returns the answer, whose body the caller
// reads and closes. Unlike Admin it sets no deadline of its own: a large
// file takes as long as it takes, and ctx bounds it.
func Upload(ctx context.Context, base, path, contentType string, body io.Reader) (*http.Response, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+path, body)
	if err != nil {
		return nil, cli.UsageError{Err: fmt.Errorf("--admin %s: %w", iso.MaskPANs(base), urlErrorCause(err))}
	}
	req.Header.Set("Content-Type", contentType)
	creds, err := EnvCredentials()
	if err != nil {
		return nil, err
	}
	resp, err := creds.Do(http.DefaultClient, req)
	if err != nil {
		return nil, fmt.Errorf("reaching the switch's admin API at %s (is goldcard serve running?): POST %s: %w",
			iso.MaskPANs(base), iso.MaskPANs(path), urlErrorCause(err))
	}
	return resp, nil
}

// AdminFailure is the error an admin API answer with an unexpected status
// stands for: its reason, where it gives one. What is not the switch's
// own answer (a proxy's page) may quote the request, so digit runs are
// masked.
func AdminFailure(raw []byte, status int) error {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s (HTTP %d)", iso.MaskPANs(e.Error), status)
	}
	return fmt.Errorf("admin API answered HTTP %d: %s", status, iso.MaskPANs(string(bytes.TrimSpace(raw))))
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
