// Package replay is goldcard replay: it sends message fixtures and packet
// captures to a running switch as a bank would, and compares the switch's
// answers with those expected.
package replay

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/fixture"
)

type flags struct {
	addr, admin, bank string
	dialect, header   string
	cards             []string
	noCards           bool
	update            bool
	sequential        bool
	asJSON, quiet     bool
	timeout           time.Duration
	tls               client.TLS
}

// Command is goldcard replay.
func Command() *cobra.Command {
	var f flags
	c := &cobra.Command{
		Use:   "replay [flags] PATH...",
		Short: "Send message fixtures or packet captures to a switch and compare its answers",
		Long: `Send message fixtures to a running switch, as a bank would, and compare each
answer with the one the fixture expects.

PATH is a fixture file (.yaml), a directory of them (searched recursively), or
a packet capture (.pcap or .pcapng, as dumpcap or tcpdump write them): its TCP
streams are reassembled, split into frames by the length header (--header)
and unpacked with --dialect; each request is paired with the captured response
of the same STAN, and that response is what is expected.

Each fixture runs on a connection of its own, one step at a time. Steps are
sent in the order the switch answered them when they were captured, across
all PATHs (so the connections of a capture are replayed together, and the
balances the answers show come out the same even if the capture had many
requests in flight); steps without capture times run first, in file order.
--sequential runs each PATH to its end before the next instead. The cards a
fixture names are issued first through the admin API (--admin); a card that
exists is left as it is. Replay against a fresh switch: balances, holds and
the day's redemption quota are part of what the answers show.

Fields are compared exactly, except where the fixture writes "*" (present,
any value) or "/regexp/", or lists the field under "ignore". Each mismatch
is printed with the fields that differ; the exit status is 1 if any step
failed. --update rewrites the expectations from the answers instead (a
capture's are written next to it as PATH-N.yaml), keeping every pattern
that still matches.`,
		Example: `  goldcard replay testdata/fixtures
  goldcard replay --addr 10.0.0.5:8583 --admin http://10.0.0.5:8080 capture/
  goldcard replay --bank ICBC --cards capture/cards.yaml session.pcapng
  goldcard replay --update testdata/fixtures/core/purchase.yaml`,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cli.UsageError{Err: errors.New("name at least one fixture file, directory or capture (see goldcard replay --help)")}
			}
			return run(c, f, args)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8583", "the switch's bank listener, HOST:PORT")
	fl.StringVar(&f.admin, "admin", "http://127.0.0.1:8080", "the switch's admin API, for issuing the fixtures' cards")
	fl.StringVar(&f.bank, "bank", "", "replay as this bank: its listener, dialect and header come from the switch's configuration")
	fl.StringVar(&f.dialect, "dialect", "", "dialect of captures and of fixtures that name none (default "+iso.DefaultDialect+", or the bank's)")
	fl.StringVar(&f.header, "header", "", "length header of captures and of fixtures that name none (default binary2, or the bank's)")
	fl.StringSliceVar(&f.cards, "cards", nil, "more fixture files or directories whose cards are issued (e.g. those of a --capture run, for a packet capture)")
	fl.BoolVar(&f.noCards, "no-cards", false, "issue no cards")
	fl.BoolVar(&f.update, "update", false, "rewrite the expected responses from the switch's answers")
	fl.BoolVar(&f.sequential, "sequential", false, "replay each PATH to its end before the next, whatever the capture times")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "longest wait for one answer")
	fl.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only failures and the summary")
	f.tls.AddFlags(c)
	return c
}

func run(c *cobra.Command, f flags, args []string) error {
	ctx := c.Context()
	stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()
	dialects := &remoteDialects{admin: f.admin, ctx: ctx, got: map[string]*iso.Dialect{}}
	if f.bank != "" {
		b, err := bankConfig(ctx, f.admin, f.bank)
		if err != nil {
			return err
		}
		if !c.Flags().Changed("addr") {
			f.addr = bankAddr(b.Listen, f.admin)
		}
		f.dialect = cmp.Or(f.dialect, b.Dialect)
		f.header = cmp.Or(f.header, b.Header)
		dialects.bank = b
	}
	f.dialect = cmp.Or(f.dialect, iso.DefaultDialect)
	f.header = cmp.Or(f.header, iso.HeaderBinary2)
	h, err := iso.HeaderByName(f.header)
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("--header: %w", err)}
	}
	tlsConf, err := f.tls.Config()
	if err != nil {
		return cli.UsageError{Err: err}
	}
	paths, err := fixture.Paths(args)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	if len(paths) == 0 {
		return cli.UsageError{Err: fmt.Errorf("no fixtures (.yaml) or captures (.pcap, .pcapng) in %s", strings.Join(args, ", "))}
	}
	sources, err := loadSources(paths, f, dialects, h, stderr)
	if err != nil {
		return err
	}
	if !f.noCards {
		cardFiles, err := fixture.Paths(f.cards)
		if err != nil {
			return cli.UsageError{Err: fmt.Errorf("--cards: %w", err)}
		}
		extra := make([]*fixture.Source, 0, len(cardFiles))
		for _, p := range cardFiles {
			if ext := strings.ToLower(filepath.Ext(p)); ext != ".yaml" && ext != ".yml" {
				continue
			}
			file, err := fixture.LoadCards(p)
			if err != nil {
				return cli.UsageError{Err: fmt.Errorf("--cards %s: %w", p, err)}
			}
			extra = append(extra, &fixture.Source{Path: p, File: file})
		}
		if err := issueCards(ctx, f.admin, append(extra, sources...), stderr); err != nil {
			return err
		}
	}

	total := 0
	for _, s := range sources {
		total += len(s.File.Steps)
	}
	var done atomic.Int64
	stopProgress := func() {}
	if !f.asJSON {
		stopProgress = cli.Progress(stderr, &done, time.Now(), "steps")
	}
	r := &fixture.Replayer{
		Addr: f.addr, Timeout: f.timeout, Dialect: dialects.find, Dial: client.TLSDialer(tlsConf),
		Report: func(o fixture.Outcome) {
			done.Add(1)
			if o.Status == fixture.Fail && !f.asJSON && !f.update {
				stopProgress()
				printFailure(stdout, o)
				stopProgress = cli.Progress(stderr, &done, time.Now(), "steps")
			}
		},
	}
	start := time.Now()
	outcomes := r.Run(ctx, sources, f.sequential)
	stopProgress()
	sum := summarise(sources, outcomes, time.Since(start))

	if f.update {
		for _, s := range fixture.Update(outcomes) {
			path := s.Path
			if s.Conn > 0 {
				path = fmt.Sprintf("%s-%d.yaml", strings.TrimSuffix(s.Path, filepath.Ext(s.Path)), s.Conn)
			}
			if err := fixture.Save(path, s.File); err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
			sum.Updated = append(sum.Updated, path)
		}
	}
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return err
		}
	} else {
		sum.print(stdout, f.quiet)
	}
	failed := sum.Failed
	if f.update {
		failed = sum.Unanswered
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d steps failed", failed, sum.Steps)
	}
	return nil
}

// loadSources reads fixtures and captures into conversations.
func loadSources(paths []string, f flags, dialects *remoteDialects, h iso.Header, stderr io.Writer) ([]*fixture.Source, error) {
	var sources []*fixture.Source
	for _, p := range paths {
		switch strings.ToLower(filepath.Ext(p)) {
		case ".pcap", ".pcapng":
			d, err := dialects.find(f.dialect)
			if err != nil {
				return nil, cli.UsageError{Err: fmt.Errorf("--dialect: %w", err)}
			}
			files, warnings, err := fixture.ReadCapture(p, d, h)
			if err != nil {
				return nil, err
			}
			for _, w := range warnings {
				fmt.Fprintf(stderr, "goldcard: warning: %s\n", w)
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("%s: no %s frames with a %s header in any TCP stream", p, d.Name, h.Name())
			}
			for i, file := range files {
				sources = append(sources, &fixture.Source{Path: p, Conn: i + 1, File: file})
			}
		default:
			file, err := fixture.Load(p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if file.Dialect == "" {
				file.Dialect = f.dialect
			}
			if file.Header == "" {
				file.Header = f.header
			}
			sources = append(sources, &fixture.Source{Path: p, File: file})
		}
	}
	if b := dialects.bank; b != nil {
		for _, s := range sources {
			if s.File.Dialect != b.Dialect || s.File.Header != b.Header {
				return nil, fmt.Errorf("%s is in dialect %s with header %s; bank %s speaks %s with %s",
					s.Label(), s.File.Dialect, s.File.Header, b.Code, b.Dialect, b.Header)
			}
			routeTo(s.File, b)
		}
	}
	return sources, nil
}

// routeTo makes a fixture's requests reach bank b on a shared listener:
// where b names its acquirers, DE32 is set to the first of them unless it
// already routes to b, in the requests and the expected answers alike.
func routeTo(f *fixture.File, b *config.Bank) {
	if len(b.Acquirers) == 0 {
		return
	}
	for i := range f.Steps {
		st := &f.Steps[i]
		if st.Request.Fields == nil || b.Serves(st.Request.Fields[32]) {
			continue
		}
		st.Request.Fields[32] = b.Acquirers[0]
		if st.Response != nil && st.Response.Fields != nil {
			st.Response.Fields[32] = b.Acquirers[0]
		}
	}
}
