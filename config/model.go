package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("3s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"3s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Bank is one bank connected to the switch.
type Bank struct {
	Code    string `json:"code"`
	Name    string `json:"name"`
	Listen  string `json:"listen"`  // host:port of its listener
	Dialect string `json:"dialect"` // a dialect name
	Header  string `json:"header"`  // binary2, binary2-inclusive or ascii4
	// AuthTimeout is how long the bank waits for an answer;
	// SafetyMargin is kept back from it for the way home.
	AuthTimeout  Duration `json:"auth_timeout"`
	SafetyMargin Duration `json:"safety_margin"`
	// Acquirers are the DE32 values routed to this bank on a shared port.
	Acquirers      []string `json:"acquirers,omitempty"`
	AllowedCIDRs   []string `json:"allowed_cidrs,omitempty"`
	MaxConnections int      `json:"max_connections"`
	// MaxInFlight bounds requests being worked on per connection; the
	// link stops reading when it is reached.
	MaxInFlight int `json:"max_in_flight"`
	// MaxFrame is the longest message body accepted, in bytes.
	MaxFrame int  `json:"max_frame"`
	Enabled  bool `json:"enabled"`
}

// Budget is the time the switch has to answer a message from this bank.
func (b *Bank) Budget() time.Duration { return b.AuthTimeout.D() - b.SafetyMargin.D() }

// Limits are the switch's money limits.
type Limits struct {
	// RedemptionQuota is the instant-redemption quota per card per day,
	// in minor units.
	RedemptionQuota int64 `json:"redemption_quota"`
	// HoldValidity is how long an authorisation hold lasts uncompleted.
	HoldValidity Duration `json:"hold_validity"`
}

// Snapshot is one complete, validated configuration. It is never changed
// once made.
type Snapshot struct {
	Revision int64            `json:"revision"`
	Banks    map[string]*Bank `json:"banks"`
	Limits   Limits           `json:"limits"`
}

// Defaults.
const (
	DefaultBankCode        = "default"
	DefaultListen          = ":8583"
	DefaultDialect         = "iso87-ascii"
	DefaultHeader          = "binary2"
	DefaultAuthTimeout     = 3 * time.Second
	DefaultSafetyMargin    = 300 * time.Millisecond
	DefaultMaxConnections  = 64
	DefaultMaxInFlight     = 256
	DefaultMaxFrame        = 8192
	DefaultRedemptionQuota = 10_000_00 // 10,000.00 in minor units
	DefaultHoldValidity    = 7 * 24 * time.Hour
)

// DefaultBank returns the built-in bank listening on listen.
func DefaultBank(listen string) *Bank {
	return &Bank{
		Code:           DefaultBankCode,
		Name:           "Built-in bank",
		Listen:         listen,
		Dialect:        DefaultDialect,
		Header:         DefaultHeader,
		AuthTimeout:    Duration(DefaultAuthTimeout),
		SafetyMargin:   Duration(DefaultSafetyMargin),
		MaxConnections: DefaultMaxConnections,
		MaxInFlight:    DefaultMaxInFlight,
		MaxFrame:       DefaultMaxFrame,
		Enabled:        true,
	}
}

// DefaultLimits returns the limits used when none are configured.
func DefaultLimits() Limits {
	return Limits{RedemptionQuota: DefaultRedemptionQuota, HoldValidity: Duration(DefaultHoldValidity)}
}

var codePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Validate reports everything wrong with b, or nil.
func (b *Bank) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !codePattern.MatchString(b.Code) {
		bad("code %q must be 1-32 lower-case letters, digits, - or _", b.Code)
	}
	if b.Listen == "" {
		bad("listen is required")
	}
	if b.Dialect == "" {
		bad("dialect is required")
	}
	switch b.Header {
	case "binary2", "binary2-inclusive", "ascii4":
	default:
		bad("header %q must be binary2, binary2-inclusive or ascii4", b.Header)
	}
	if b.AuthTimeout <= 0 {
		bad("auth_timeout must be positive")
	}
	if b.SafetyMargin < 0 {
		bad("safety_margin cannot be negative")
	}
	if b.AuthTimeout > 0 && b.SafetyMargin >= b.AuthTimeout {
		bad("safety_margin %s leaves no time inside auth_timeout %s", b.SafetyMargin.D(), b.AuthTimeout.D())
	}
	for _, c := range b.AllowedCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			bad("allowed_cidrs: %v", err)
		}
	}
	if b.MaxConnections <= 0 {
		bad("max_connections must be positive")
	}
	if b.MaxInFlight <= 0 {
		bad("max_in_flight must be positive")
	}
	if b.MaxFrame < 64 || b.MaxFrame > 65535 {
		bad("max_frame must be between 64 and 65535 bytes")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bank %q: %w", b.Code, err)
	}
	return nil
}

// Validate reports everything wrong with l, or nil.
func (l Limits) Validate() error {
	var errs []error
	if l.RedemptionQuota < 0 {
		errs = append(errs, errors.New("limits: redemption_quota cannot be negative"))
	}
	if l.HoldValidity <= 0 {
		errs = append(errs, errors.New("limits: hold_validity must be positive"))
	}
	return errors.Join(errs...)
}

// Validate reports everything wrong with s, or nil.
func (s *Snapshot) Validate() error {
	var errs []error
	listeners := map[string]string{}
	for _, code := range s.BankCodes() {
		b := s.Banks[code]
		if b.Code != code {
			errs = append(errs, fmt.Errorf("bank %q is filed under %q", b.Code, code))
		}
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
		}
		if other, ok := listeners[b.Listen]; ok && b.Enabled {
			errs = append(errs, fmt.Errorf("banks %q and %q share listener %s", other, code, b.Listen))
		}
		if b.Enabled {
			listeners[b.Listen] = code
		}
	}
	if err := s.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// BankCodes returns the codes of the configured banks, sorted.
func (s *Snapshot) BankCodes() []string {
	codes := make([]string, 0, len(s.Banks))
	for c := range s.Banks {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	return codes
}

// DecodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
