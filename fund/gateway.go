package fund

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
)

// Gateway is the fund company's HTTP/JSON gateway:
//
//	POST /redemptions    {"order_id","account","amount","currency"} -> Status
//	GET  /redemptions/ID                                           -> Status, 404 if unknown
//	POST /subscriptions  and GET /subscriptions/ID alike.
//
// A POST is idempotent on order_id. Time limits come from the caller's
// context.
type Gateway struct {
	base   string
	client *http.Client
}

// NewGateway returns a client of the gateway at base (http://host:port).
func NewGateway(base string) (*Gateway, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fund gateway URL %q: want http://host:port", base)
	}
	return &Gateway{
		base: strings.TrimRight(base, "/"),
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}},
	}, nil
}

func (g *Gateway) Redeem(ctx context.Context, o Order) (Status, error) {
	return g.place(ctx, "/redemptions", o)
}

func (g *Gateway) Subscribe(ctx context.Context, o Order) (Status, error) {
	return g.place(ctx, "/subscriptions", o)
}

func (g *Gateway) RedemptionStatus(ctx context.Context, id string) (Status, error) {
	return g.status(ctx, "/redemptions/", id)
}

func (g *Gateway) SubscriptionStatus(ctx context.Context, id string) (Status, error) {
	return g.status(ctx, "/subscriptions/", id)
}

func (g *Gateway) place(ctx context.Context, path string, o Order) (Status, error) {
	body, _ := json.Marshal(o)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.base+path, bytes.NewReader(body))
	if err != nil {
		return Status{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	return g.do(req)
}

func (g *Gateway) status(ctx context.Context, path, id string) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+path+url.PathEscape(id), nil)
	if err != nil {
		return Status{}, err
	}
	return g.do(req)
}

// definiteRefusal reports whether a POST answered with status was
// refused for good: a client error other than those that only say "not
// now" (timeout, too many requests) or "not you" (authentication).
func definiteRefusal(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusUnauthorized,
		http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
		return false
	}
	return status >= 400 && status < 500
}

// do sends a request. Any answer but a definite one is an error: the
// order's fate is unknown and must be asked again.
func (g *Gateway) do(req *http.Request) (Status, error) {
	resp, err := g.client.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("fund gateway: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return Status{}, fmt.Errorf("fund gateway: reading answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case req.Method == http.MethodGet && resp.StatusCode == http.StatusNotFound:
		return Status{}, ErrUnknownOrder
	case req.Method == http.MethodPost && definiteRefusal(resp.StatusCode):
		// The gateway refused the order itself: it was not executed.
		return Status{State: Failed, Reason: fmt.Sprintf("gateway refused: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(raw))}, nil
	default:
		// Anything else says nothing about the order's fate.
		return Status{}, fmt.Errorf("fund gateway: HTTP %d", resp.StatusCode)
	}
	var st Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return Status{}, fmt.Errorf("fund gateway: malformed answer: %w", err)
	}
	switch st.State {
	case Pending, Confirmed, Failed:
		return st, nil
	}
	return Status{}, errors.New("fund gateway: answer without a known state")
}
