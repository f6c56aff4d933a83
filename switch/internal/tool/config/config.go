// Package configtool is goldcard config: it reads, changes and follows the
// config center in etcd that every switch watches, and checks config files.
// A change is validated against the whole config before it is written, and
// put waits for every live switch to report applying it.
package configtool

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

type flags struct {
	etcd, prefix string
	kekFile      string
	timeout      time.Duration
	asJSON       bool
}

// Command is goldcard config and its subcommands get, put, delete, watch
// and validate.
func Command() *cobra.Command {
	var f flags
	c := &cobra.Command{
		Use:   "config",
		Short: "Read, change and follow the config center in etcd",
		Long: `Read, change and follow the config center in etcd, which every switch watches.

Keys are relative to <prefix>config/:
  banks/<code>     a bank: {"code","name","listen","dialect","header","auth_timeout",
                   "safety_margin","acquirers","allowed_cidrs","max_connections",
                   "max_in_flight","max_frame","cutover","cutover_zone","enabled"}
  dialects/<name>  a moov-io/iso8583 JSON spec (iso87-ascii and iso87-ascii-binbitmap are built in)
  recon_formats/<name>
                   a daily file's format: {"source","layout","encoding","delimiter","header",
                   "columns","fields","skip_lines","trailer_prefix","amount"} (csv and fund-csv
                   are built in)
  limits           {"redemption_quota","atm_per_txn","pos_per_txn","hold_validity","four_eyes_above"}
  fund             {"provider","url","call_timeout","simulator_latency","simulator_fail_rate",
                   "yield_per_10k","yield_time"}
  sweep            {"threshold","min_sweep","time","time_zone","confirm_time"}
  calendar/<year>  {"holidays":["YYYY-MM-DD",...]}

Amounts are minor units, durations Go duration strings ("3s"). testdata/goldcard.yaml
documents every setting with its default.

A bank's MAC key is given in the clear ("mac": {"algorithm", "key"}) and
written wrapped under the switches' KEK ("key_wrapped"), so put needs the
KEK (--kek-file or $GOLDCARD_KEK); get and watch never show either form.`,
		Args: cli.NoArgs,
	}
	pf := c.PersistentFlags()
	pf.StringVar(&f.etcd, "etcd", "http://127.0.0.1:2379", "etcd URLs, separated by commas")
	pf.StringVar(&f.prefix, "etcd-prefix", "/goldcard/", "prefix of the switch's etcd keys")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Second, "longest wait for etcd, and (put) for the switches to report")
	pf.StringVar(&f.kekFile, "kek-file", "", "the switches' key-encryption keys, to wrap a bank's MAC key before it is written (default $GOLDCARD_KEK, else ./var/dev.kek)")

	get := &cobra.Command{
		Use:   "get [KEY]",
		Short: "Print a config key's value, or every key with its value",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx, cl, done, err := etcdCall(c, f)
			if err != nil {
				return err
			}
			defer done()
			kvs, rev, err := config.Read(ctx, cl, f.prefix)
			if err != nil {
				return fmt.Errorf("reading the config center at %s: %w", f.etcd, err)
			}
			out := c.OutOrStdout()
			if len(args) == 1 {
				v, ok := kvs[args[0]]
				if !ok {
					if name, isDialect := strings.CutPrefix(args[0], "dialects/"); isDialect {
						if b, ok := iso.BuiltinSpecs()[name]; ok {
							fmt.Fprintf(c.ErrOrStderr(), "(%s is built in; no key overrides it)\n", args[0])
							_, err := out.Write(b)
							return err
						}
					}
					return fmt.Errorf("no key %s in the config center", args[0])
				}
				return writeIndented(out, config.Redact(args[0], v))
			}
			all := map[string]json.RawMessage{}
			for k, v := range kvs {
				all[k] = config.Redact(k, v)
			}
			b, _ := json.MarshalIndent(map[string]any{"revision": rev, "keys": all}, "", "  ")
			_, err = fmt.Fprintln(out, string(b))
			return err
		},
	}

	put := &cobra.Command{
		Use:   "put KEY FILE",
		Short: "Validate a value and write it, then wait until every live switch has applied it",
		Long: `Validate KEY's new value (FILE, JSON or YAML; - for standard input) against the
whole config, write it, then wait until every live switch reports the new
revision, printing how long each took. Exits 1 if a switch refuses the change,
applies it with a problem (such as a bank port it cannot or will not open) or
does not report before --timeout.`,
		Example: "  goldcard config put banks/acme acme.json\n  goldcard config put limits - <<<'{\"redemption_quota\": 500000}'",
		Args:    cli.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return putValue(c, f, args[0], args[1])
		},
	}
	put.Flags().BoolVar(&f.asJSON, "json", false, "print the switches' reports as JSON")

	del := &cobra.Command{
		Use:   "delete KEY",
		Short: "Remove a key (a bank's listener closes once its links drain)",
		Args:  cli.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx, cl, done, err := etcdCall(c, f)
			if err != nil {
				return err
			}
			defer done()
			rev, _, err := change(ctx, cl, f, args[0], nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "deleted %s at revision %d\n", args[0], rev)
			return nil
		},
	}

	watch := &cobra.Command{
		Use:   "watch",
		Short: "Print config changes and switches' reports as they happen (until interrupted)",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client.DialEtcd(f.etcd)
			if err != nil {
				return err
			}
			defer cl.Close()
			out := c.OutOrStdout()
			fmt.Fprintf(c.ErrOrStderr(), "watching %s on %s (Ctrl-C to stop)\n", f.prefix, f.etcd)
			for resp := range cl.Watch(c.Context(), f.prefix, clientv3.WithPrefix()) {
				if err := resp.Err(); err != nil {
					return err
				}
				for _, ev := range resp.Events {
					key := strings.TrimPrefix(string(ev.Kv.Key), f.prefix)
					if strings.HasPrefix(key, "locks/") {
						continue
					}
					fmt.Fprintf(out, "%s rev %d %s %s %s\n", time.Now().Format("15:04:05.000"), ev.Kv.ModRevision,
						strings.ToLower(ev.Type.String()), key, compactJSON(config.Redact(strings.TrimPrefix(key, "config/"), ev.Kv.Value)))
				}
			}
			return nil
		},
	}

	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file (as given to goldcard serve --config) without writing anything",
		Args:  cli.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			b, err := readArg(c, args[0])
			if err != nil {
				return err
			}
			kvs, err := config.ParseFile(b)
			if err == nil {
				err = validate(kvs)
			}
			if err != nil {
				return fmt.Errorf("%s is invalid:\n%w", args[0], err)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s is valid: %d keys\n", args[0], len(kvs))
			return nil
		},
	}
	c.AddCommand(get, put, del, watch, validate)
	return c
}

// etcdCall connects to etcd for one command, with the command's timeout;
// done closes the connection.
func etcdCall(c *cobra.Command, f flags) (ctx context.Context, cl *clientv3.Client, done func(), err error) {
	cl, err = client.DialEtcd(f.etcd)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context(), f.timeout)
	return ctx, cl, func() { cancel(); cl.Close() }, nil
}

// readArg reads a file, or standard input for "-".
func readArg(c *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(c.InOrStdin())
	}
	return os.ReadFile(path)
}

func writeIndented(w io.Writer, v []byte) error {
	var buf bytes.Buffer
	if json.Indent(&buf, v, "", "  ") != nil {
		buf.Reset()
		buf.Write(v)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func compactJSON(v []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return string(v)
	}
	return buf.String()
}
