package configtool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/kek"
)

// change sets key to value (deletes it for nil) if the whole config
// with the change is valid, and only if no one changed the config between
// the check and the write; a concurrent change is read and checked again.
// It returns the new revision and when the write was sent.
func change(ctx context.Context, cl *clientv3.Client, f flags, key string, value []byte) (int64, time.Time, error) {
	for {
		kvs, rev, err := config.Read(ctx, cl, f.prefix)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("reading the config center at %s: %w", f.etcd, err)
		}
		if value == nil {
			if _, ok := kvs[key]; !ok {
				return 0, time.Time{}, fmt.Errorf("no key %s in the config center", key)
			}
			delete(kvs, key)
		} else {
			kvs[key] = value
		}
		if err := validate(kvs); err != nil {
			return 0, time.Time{}, fmt.Errorf("refused, nothing written: the config with this change to %s would be invalid:\n%w", key, err)
		}
		sent := time.Now()
		newRev, err := config.Write(ctx, cl, f.prefix, key, value, rev)
		if errors.Is(err, config.ErrChanged) {
			continue
		}
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("writing %s: %w", key, err)
		}
		return newRev, sent, nil
	}
}

// valueJSON turns a value file (JSON or YAML) into compact JSON.
func valueJSON(key string, b []byte) ([]byte, error) {
	kvs, err := config.ParseFile(wrapForKey(key, b))
	if err != nil {
		return nil, err
	}
	return kvs[key], nil
}

// wrapForKey places a value where a config file would hold it, so one
// parser reads both.
func wrapForKey(key string, b []byte) []byte {
	kind, name, _ := strings.Cut(key, "/")
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		js = b
	}
	if name == "" {
		return []byte(fmt.Sprintf(`{%q: %s}`, kind, js))
	}
	return []byte(fmt.Sprintf(`{%q: {%q: %s}}`, kind, name, js))
}

// wrapMAC is a bank's value with its MAC key, if given in the clear,
// wrapped under the KEK (the config center never holds it in the clear),
// and the check value of the KEK it is wrapped under, if it is.
func wrapMAC(f flags, key string, value []byte) ([]byte, string, error) {
	one := map[string][]byte{key: value}
	var keys config.KEK
	if _, err := config.WrapKeys(one, nil, false); err != nil {
		// A clear key to wrap: only now is the KEK needed.
		set, kerr := kek.ForTool(f.kekFile, "./var")
		if kerr != nil {
			return nil, "", fmt.Errorf("%s holds a MAC key in the clear, which is written wrapped under the switches' KEK: %w", key, kerr)
		}
		keys = set
	}
	if _, err := config.WrapKeys(one, keys, false); err != nil {
		return nil, "", err
	}
	return one[key], config.WrappedUnder(key, one[key]), nil
}

func putValue(c *cobra.Command, f flags, key, path string) error {
	raw, err := readArg(c, path)
	if err != nil {
		return err
	}
	if _, err := config.DecodeValue(key, []byte("{}")); errors.Is(err, config.ErrUnknownKey) {
		return cli.UsageError{Err: err}
	}
	value, err := valueJSON(key, raw)
	if err != nil {
		return fmt.Errorf("%s is invalid:\n%w", key, err)
	}
	value, under, err := wrapMAC(f, key, value)
	if err != nil {
		return err
	}
	ctx, cl, done, err := etcdCall(c, f)
	if err != nil {
		return err
	}
	defer done()
	live, _, err := config.Instances(ctx, cl, f.prefix)
	if err != nil {
		return fmt.Errorf("reading the config center at %s: %w", f.etcd, err)
	}
	if under != "" {
		if ok, who := config.Holds(live, under); !ok {
			return fmt.Errorf("refused, nothing written: the MAC key of %s is wrapped under KEK %s, and %s: give --kek-file the switches' KEK", key, under, who)
		}
	}
	rev, start, err := change(ctx, cl, f, key, value)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.ErrOrStderr(), "wrote %s at revision %d; waiting for %d switch(es)\n", key, rev, len(live))
	results, err := client.WaitApplied(ctx, cl, f.prefix, live, rev, start, f.timeout)
	if f.asJSON {
		b, _ := json.MarshalIndent(results, "", "  ")
		fmt.Fprintln(c.OutOrStdout(), string(b))
	} else {
		client.PrintApplied(c.OutOrStdout(), results)
	}
	errs := []error{err}
	for _, a := range results {
		if a.Warning != "" {
			errs = append(errs, fmt.Errorf("switch %s applied the change, with a problem: %s", a.ID, a.Warning))
		}
	}
	return errors.Join(errs...)
}
