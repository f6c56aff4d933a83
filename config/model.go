package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
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
	MaxFrame int `json:"max_frame"`
	// IdleTimeout closes a link that sends nothing, not even an echo, for
	// this long (0: never). FrameTimeout bounds the time from a frame's
	// first byte to its last, so a peer cannot hold a link open by
	// trickling bytes.
	IdleTimeout  Duration `json:"idle_timeout"`
	FrameTimeout Duration `json:"frame_timeout"`
	// MaxRequestRate is the most requests per second one connection may
	// send (0: no limit), with bursts of RateBurst; requests over it are
	// answered 91 without being worked on.
	MaxRequestRate float64 `json:"max_request_rate,omitempty"`
	RateBurst      int     `json:"rate_burst,omitempty"`
	// RequireSignOn refuses financial messages (91) on a link until the
	// bank has signed on with 0800/001.
	RequireSignOn bool `json:"require_sign_on,omitempty"`
	// TLS secures the listener; without it the bank speaks plain TCP.
	TLS *TLS `json:"tls,omitempty"`
	// MAC authenticates every message in DE64 (DE128 when the message has
	// a secondary bitmap).
	MAC *MAC `json:"mac,omitempty"`
	// TxnKey names the fields that identify one of the bank's
	// transactions: a repeat or retransmission carries the same values,
	// and is answered with its original's response (see TxnKeyFields).
	TxnKey []string `json:"txn_key"`
	// Cutover is when the bank's next business date begins (HH:MM in
	// CutoverZone): a request that arrives from then on, without a DE15
	// of its own, belongs to the next date. 00:00 is midnight.
	Cutover     string `json:"cutover"`
	CutoverZone string `json:"cutover_zone"`
	Enabled     bool   `json:"enabled"`
}

// TxnKeyFields are the fields a bank's txn_key may name.
var TxnKeyFields = []string{"acquirer", "stan", "transmitted", "terminal", "rrn", "local_date", "local_time", "merchant"}

// DefaultTxnKey identifies a transaction by what stays the same on every
// transmission of it: acquirer (DE32), STAN (DE11), terminal (DE41), RRN
// (DE37) and local date and time (DE13, DE12). DE7 is left out, since many
// acquirers stamp it afresh on each transmission.
func DefaultTxnKey() []string {
	return []string{"acquirer", "stan", "terminal", "rrn", "local_date", "local_time"}
}

// Budget is the time the switch has to answer a message from this bank.
func (b *Bank) Budget() time.Duration { return b.AuthTimeout.D() - b.SafetyMargin.D() }

// Serves reports whether DE32 value acquirer (leading zeros removed) is
// routed to b on a shared port.
func (b *Bank) Serves(acquirer string) bool {
	for _, a := range b.Acquirers {
		if strings.TrimLeft(a, "0") == strings.TrimLeft(acquirer, "0") {
			return true
		}
	}
	return false
}

// Limits are the switch's money limits, in minor units.
type Limits struct {
	// RedemptionQuota is the instant-redemption quota per card per day.
	RedemptionQuota int64 `json:"redemption_quota"`
	// ATMPerTxn and POSPerTxn cap one cash withdrawal and one purchase;
	// zero means no cap.
	ATMPerTxn int64 `json:"atm_per_txn"`
	POSPerTxn int64 `json:"pos_per_txn"`
	// HoldValidity is how long an authorisation hold lasts uncompleted.
	HoldValidity Duration `json:"hold_validity"`
	// FourEyesAbove is the largest reconciliation adjustment one
	// operator posts alone (minor units); above it a second approves.
	FourEyesAbove int64 `json:"four_eyes_above"`
}

// Fund providers.
const (
	FundSimulator = "simulator"
	FundGateway   = "gateway"
)

// Fund says how to reach the fund company.
type Fund struct {
	Provider string `json:"provider"` // simulator or gateway
	URL      string `json:"url,omitempty"`
	// CallTimeout bounds a call outside any bank's deadline (status
	// checks, transfers out).
	CallTimeout Duration `json:"call_timeout"`
	// SimulatorLatency and SimulatorFailRate shape the built-in simulator.
	SimulatorLatency  Duration `json:"simulator_latency"`
	SimulatorFailRate float64  `json:"simulator_fail_rate"`
	// YieldPer10K is the fund's daily income per 10,000 shares, in units
	// of currency with up to four decimals ("0.4523"); "0" posts none.
	YieldPer10K string `json:"yield_per_10k"`
	// YieldTime is when each day's income is posted (HH:MM, Asia/Shanghai).
	YieldTime string `json:"yield_time"`
}

// YieldRate is YieldPer10K in 0.0001 units of currency.
func (f Fund) YieldRate() (int64, error) {
	whole, frac, _ := strings.Cut(f.YieldPer10K, ".")
	if whole == "" || len(frac) > 4 || !digits(whole) || (frac != "" && !digits(frac)) || len(whole) > 6 {
		return 0, fmt.Errorf("fund: yield_per_10k %q must be a decimal with at most 4 places, such as \"0.4523\"", f.YieldPer10K)
	}
	frac += strings.Repeat("0", 4-len(frac))
	var n int64
	for _, c := range whole + frac {
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// Sweep moves money above a threshold into the fund on trading days.
type Sweep struct {
	Threshold int64  `json:"threshold"` // kept in the card, minor units
	MinSweep  int64  `json:"min_sweep"` // smaller excesses stay, minor units
	Time      string `json:"time"`      // HH:MM on a trading day
	TimeZone  string `json:"time_zone"`
	// ConfirmTime is when, on the next trading day, a sweep's
	// subscription is confirmed into the fund (HH:MM).
	ConfirmTime string `json:"confirm_time"`
}

// Calendar is one year of the fund's trading calendar: weekdays are
// trading days except these holidays.
type Calendar struct {
	Holidays []string `json:"holidays"` // YYYY-MM-DD
}

// Snapshot is one complete, validated configuration. It is never changed
// once made.
type Snapshot struct {
	// Revision is the etcd revision the snapshot was read at.
	Revision int64                      `json:"revision"`
	Banks    map[string]*Bank           `json:"banks"`
	Dialects map[string]json.RawMessage `json:"dialects"` // moov-io JSON specs by name
	Limits   Limits                     `json:"limits"`
	Fund     Fund                       `json:"fund"`
	Sweep    Sweep                      `json:"sweep"`
	Calendar map[int]Calendar           `json:"calendar"`
	// ReconFormats are the daily files' formats by name: the builtin
	// ones, and those the config center adds or replaces.
	ReconFormats map[string]ReconFormat `json:"recon_formats"`
	Keys         Keys                   `json:"keys"`
}

// Keys says which of the ledger's keys the switches use: goldcard keys
// rotate sets it.
type Keys struct {
	// DataKey is the data key every switch seals new rows under (0: the
	// newest in the database when the switch started).
	DataKey int32 `json:"data_key,omitempty"`
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
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultFrameTimeout    = 10 * time.Second
	DefaultRedemptionQuota = 10_000_00 // 10,000.00 in minor units
	DefaultFourEyesAbove   = 1_000_00  // 1,000.00
	DefaultHoldValidity    = 7 * 24 * time.Hour
)

// DefaultBank returns the built-in bank listening on listen.
func DefaultBank(listen string) *Bank {
	b := NewBank()
	b.Code, b.Name, b.Listen = DefaultBankCode, "Built-in bank", listen
	return b
}

// NewBank returns a bank with every setting at its default; decoding a
// bank's JSON over it leaves absent settings there.
func NewBank() *Bank {
	return &Bank{
		Dialect:        DefaultDialect,
		Header:         DefaultHeader,
		AuthTimeout:    Duration(DefaultAuthTimeout),
		SafetyMargin:   Duration(DefaultSafetyMargin),
		MaxConnections: DefaultMaxConnections,
		MaxInFlight:    DefaultMaxInFlight,
		MaxFrame:       DefaultMaxFrame,
		IdleTimeout:    Duration(DefaultIdleTimeout),
		FrameTimeout:   Duration(DefaultFrameTimeout),
		TxnKey:         DefaultTxnKey(),
		Cutover:        DefaultCutover,
		CutoverZone:    DefaultCutoverZone,
		Enabled:        true,
	}
}

// DefaultLimits returns the limits used when none are configured.
func DefaultLimits() Limits {
	return Limits{RedemptionQuota: DefaultRedemptionQuota, HoldValidity: Duration(DefaultHoldValidity), FourEyesAbove: DefaultFourEyesAbove}
}

// DefaultFund returns the built-in simulated fund.
func DefaultFund() Fund {
	return Fund{Provider: FundSimulator, CallTimeout: Duration(5 * time.Second), SimulatorLatency: Duration(50 * time.Millisecond),
		YieldPer10K: "0", YieldTime: "23:30"}
}

// DefaultSweep returns the sweep used when none is configured.
func DefaultSweep() Sweep {
	return Sweep{Threshold: 1_000_00, MinSweep: 1_00, Time: "15:00", TimeZone: "Asia/Shanghai", ConfirmTime: "09:30"}
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
	} else if _, err := parseListen(b.Listen); err != nil {
		bad("listen: %v", err)
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
	for _, a := range b.Acquirers {
		if !digits(a) || len(a) > 11 {
			bad("acquirer %q must be up to 11 digits (DE32)", a)
		}
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
	if b.IdleTimeout < 0 {
		bad("idle_timeout cannot be negative (0 keeps idle links)")
	}
	if b.FrameTimeout <= 0 {
		bad("frame_timeout must be positive")
	}
	if b.MaxRequestRate < 0 || b.RateBurst < 0 {
		bad("max_request_rate and rate_burst cannot be negative")
	}
	if b.TLS != nil {
		if err := b.TLS.Validate(); err != nil {
			bad("tls: %v", err)
		}
	}
	if b.MAC != nil {
		if err := b.MAC.Validate(); err != nil {
			bad("mac: %v", err)
		}
	}
	if err := validTxnKey(b.TxnKey); err != nil {
		bad("txn_key: %v", err)
	}
	if err := b.validateCutover(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bank %q: %w", b.Code, err)
	}
	return nil
}

// validTxnKey checks a txn_key: known fields, each once, with the STAN,
// who numbered it (the acquirer or the terminal), and something that tells
// one day's STANs from another's, so that a STAN used again is never taken
// for a repeat of an old transaction.
func validTxnKey(fields []string) error {
	seen := map[string]bool{}
	for _, f := range fields {
		if !slices.Contains(TxnKeyFields, f) {
			return fmt.Errorf("%q is not a field a key may name (%s)", f, strings.Join(TxnKeyFields, ", "))
		}
		if seen[f] {
			return fmt.Errorf("%q is named twice", f)
		}
		seen[f] = true
	}
	switch {
	case !seen["stan"]:
		return errors.New("must name stan")
	case !seen["acquirer"] && !seen["terminal"]:
		return errors.New("must name acquirer or terminal as well as stan: a STAN is unique only to the one that numbers it")
	case !seen["rrn"] && !seen["transmitted"] && !seen["local_date"]:
		return errors.New("must name rrn, transmitted or local_date as well as stan: STANs are used again")
	}
	return nil
}

// Validate reports everything wrong with l, or nil.
func (l Limits) Validate() error {
	var errs []error
	if l.RedemptionQuota < 0 {
		errs = append(errs, errors.New("limits: redemption_quota cannot be negative"))
	}
	if l.ATMPerTxn < 0 || l.POSPerTxn < 0 {
		errs = append(errs, errors.New("limits: atm_per_txn and pos_per_txn cannot be negative (0 is no cap)"))
	}
	if l.HoldValidity <= 0 {
		errs = append(errs, errors.New("limits: hold_validity must be positive"))
	}
	if l.FourEyesAbove < 0 {
		errs = append(errs, errors.New("limits: four_eyes_above cannot be negative (0: every adjustment needs a second operator)"))
	}
	return errors.Join(errs...)
}

// Validate reports everything wrong with f, or nil.
func (f Fund) Validate() error {
	var errs []error
	switch f.Provider {
	case FundSimulator:
	case FundGateway:
		if !strings.HasPrefix(f.URL, "http://") && !strings.HasPrefix(f.URL, "https://") {
			errs = append(errs, fmt.Errorf("fund: url %q must be http:// or https:// for the gateway", f.URL))
		}
	default:
		errs = append(errs, fmt.Errorf("fund: provider %q must be simulator or gateway", f.Provider))
	}
	if f.CallTimeout <= 0 {
		errs = append(errs, errors.New("fund: call_timeout must be positive"))
	}
	if f.SimulatorLatency < 0 || f.SimulatorFailRate < 0 || f.SimulatorFailRate > 1 {
		errs = append(errs, errors.New("fund: simulator_latency cannot be negative and simulator_fail_rate must be between 0 and 1"))
	}
	if _, err := f.YieldRate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := time.Parse("15:04", f.YieldTime); err != nil {
		errs = append(errs, fmt.Errorf("fund: yield_time %q must be HH:MM", f.YieldTime))
	}
	return errors.Join(errs...)
}

// Validate reports everything wrong with s, or nil.
func (s Sweep) Validate() error {
	var errs []error
	if s.Threshold < 0 || s.MinSweep <= 0 {
		errs = append(errs, errors.New("sweep: threshold cannot be negative and min_sweep must be positive"))
	}
	if _, err := time.Parse("15:04", s.Time); err != nil {
		errs = append(errs, fmt.Errorf("sweep: time %q must be HH:MM", s.Time))
	}
	if _, err := time.Parse("15:04", s.ConfirmTime); err != nil {
		errs = append(errs, fmt.Errorf("sweep: confirm_time %q must be HH:MM", s.ConfirmTime))
	}
	if _, err := time.LoadLocation(s.TimeZone); err != nil || s.TimeZone == "" {
		errs = append(errs, fmt.Errorf("sweep: time_zone %q is not a known time zone", s.TimeZone))
	}
	return errors.Join(errs...)
}

// Validate reports everything wrong with the calendar of year.
func (c Calendar) Validate(year int) error {
	var errs []error
	for _, h := range c.Holidays {
		d, err := time.Parse(time.DateOnly, h)
		if err != nil || d.Year() != year {
			errs = append(errs, fmt.Errorf("calendar/%d: holiday %q must be a YYYY-MM-DD date in %d", year, h, year))
		}
	}
	return errors.Join(errs...)
}

// Validate reports everything wrong with s, or nil. Each dialect must be
// accepted by buildDialect (nil skips that check), each bank must name a
// dialect s has, and banks sharing a listener must speak one dialect and
// header and be told apart by their acquirers.
func (s *Snapshot) Validate(buildDialect func(name string, spec []byte) error) error {
	var errs []error
	for _, name := range sortedKeys(s.Dialects) {
		if buildDialect != nil {
			if err := buildDialect(name, s.Dialects[name]); err != nil {
				errs = append(errs, fmt.Errorf("dialect %q: %w", name, err))
			}
		}
	}
	shared := map[string][]*Bank{}
	for _, code := range s.BankCodes() {
		b := s.Banks[code]
		if b.Code != code {
			errs = append(errs, fmt.Errorf("bank %q is filed under %q", b.Code, code))
		}
		if err := b.Validate(); err != nil {
			errs = append(errs, err)
		}
		if _, ok := s.Dialects[b.Dialect]; !ok && b.Dialect != "" {
			errs = append(errs, fmt.Errorf("bank %q: dialect %q does not exist", code, b.Dialect))
		}
		if b.Enabled {
			shared[b.Listen] = append(shared[b.Listen], b)
		}
	}
	for listen, banks := range shared {
		if err := checkShared(listen, banks); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, checkOverlaps(shared))
	errs = append(errs, s.Limits.Validate(), s.Fund.Validate(), s.Sweep.Validate())
	for year, c := range s.Calendar {
		errs = append(errs, c.Validate(year))
	}
	for _, name := range sortedKeys(s.ReconFormats) {
		if err := s.ReconFormats[name].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("recon_formats/%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// checkShared checks the banks sharing one listener: one dialect, one
// header, and DE32 values that route each message to one bank (at most one
// bank may take whatever no other claims).
func checkShared(listen string, banks []*Bank) error {
	if len(banks) < 2 {
		return nil
	}
	var errs []error
	catchAll := 0
	owner := map[string]string{}
	for _, b := range banks {
		if b.Dialect != banks[0].Dialect || b.Header != banks[0].Header {
			errs = append(errs, fmt.Errorf("banks %q and %q share listener %s but not its dialect and header", banks[0].Code, b.Code, listen))
		}
		if !sameListenerTLS(b.TLS, banks[0].TLS) {
			errs = append(errs, fmt.Errorf("banks %q and %q share listener %s but not its TLS certificate, key, client CA and minimum version", banks[0].Code, b.Code, listen))
		}
		if len(b.Acquirers) == 0 {
			catchAll++
		}
		for _, a := range b.Acquirers {
			a = strings.TrimLeft(a, "0")
			if o, ok := owner[a]; ok {
				errs = append(errs, fmt.Errorf("banks %q and %q on listener %s both claim acquirer %s", o, b.Code, listen, a))
			}
			owner[a] = b.Code
		}
	}
	if catchAll > 1 {
		errs = append(errs, fmt.Errorf("listener %s is shared by %d banks without acquirers; at most one may take unclaimed DE32 values", listen, catchAll))
	}
	return errors.Join(errs...)
}

// BankCodes returns the codes of the configured banks, sorted.
func (s *Snapshot) BankCodes() []string { return sortedKeys(s.Banks) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// endpoint is a listen address, parsed.
type endpoint struct {
	ip   netip.Addr // invalid: any address
	port int
}

// parseListen reads host:port, where host is empty (any address), an IP
// address or localhost, and port is a number.
func parseListen(hp string) (endpoint, error) {
	i := strings.LastIndexByte(hp, ':')
	if i < 0 {
		return endpoint{}, fmt.Errorf("%q must be host:port", hp)
	}
	host, port := strings.Trim(hp[:i], "[]"), hp[i+1:]
	p, err := strconv.Atoi(port)
	if err != nil || !digits(port) || p < 0 || p > 65535 {
		return endpoint{}, fmt.Errorf("%q: port must be a number from 0 to 65535", hp)
	}
	var e endpoint
	e.port = p
	switch host {
	case "", "0.0.0.0", "::":
	case "localhost":
		e.ip = netip.MustParseAddr("127.0.0.1")
	default:
		if e.ip, err = netip.ParseAddr(host); err != nil {
			return endpoint{}, fmt.Errorf("%q: host must be empty, an IP address or localhost", hp)
		}
	}
	return e, nil
}

// checkOverlaps refuses listen addresses that are written differently but
// bind overlapping sockets (":9000" and "0.0.0.0:9000", or a wildcard and
// a specific address on one port): each would get part of the other's
// connections. Banks sharing a port must write it the same way.
func checkOverlaps(byListen map[string][]*Bank) error {
	type listener struct {
		listen string
		e      endpoint
		bank   string
	}
	var ls []listener
	for _, listen := range sortedKeys(byListen) {
		e, err := parseListen(listen)
		if err != nil || e.port == 0 {
			continue
		}
		ls = append(ls, listener{listen, e, byListen[listen][0].Code})
	}
	var errs []error
	for i := range ls {
		for j := i + 1; j < len(ls); j++ {
			a, b := ls[i], ls[j]
			if a.e.port == b.e.port && (!a.e.ip.IsValid() || !b.e.ip.IsValid() || a.e.ip == b.e.ip) {
				errs = append(errs, fmt.Errorf("banks %q (%s) and %q (%s) listen on overlapping addresses; banks sharing a port must use the same listen value",
					a.bank, a.listen, b.bank, b.listen))
			}
		}
	}
	return errors.Join(errs...)
}
