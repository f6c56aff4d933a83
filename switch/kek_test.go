package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestDevelopmentKEK: on its embedded defaults, without a KEK, the switch
// makes a development KEK in its data directory, readable by its owner
// only, and says so in its first log line.
func TestDevelopmentKEK(t *testing.T) {
	t.Parallel()
	d := switchtest.On(t, ledgertest.NewDatabase(t), "")
	d.Env = nil
	d.Start()
	first, _, _ := strings.Cut(d.Logs(), "\n")
	var line struct{ Msg, Path, KEK string }
	if err := json.Unmarshal([]byte(first), &line); err != nil || !strings.Contains(line.Msg, "development KEK") || line.KEK == "" {
		t.Fatalf("first log line %s: want the development KEK named", first)
	}
	fi, err := os.Stat(line.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("development KEK at %q: %v %v, want mode 0600", line.Path, fi, err)
	}
	d.AddCard("6228480000007101", 100, 0)
}

// TestKEKRefusals: a switch joining a cluster without a KEK, or given one
// that does not open the database's keys, refuses to start with a clear
// message, and touches neither the database nor the config center.
func TestKEKRefusals(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	db := ledgertest.NewDatabase(t)
	d := switchtest.On(t, db, etcd)
	d.Start("--etcd", etcd)
	d.AddCard("6228480000007201", 100, 0)
	d.Stop()

	before := state(t, db, etcd)
	for _, tc := range []struct {
		name, env, want string
		code            int
	}{
		{"none", "", "no key-encryption key", 2},
		{"wrong", "GOLDCARD_KEK=" + strings.Repeat("ab", 32), "does not open", 1},
		{"malformed", "GOLDCARD_KEK=not a key", "neither hex nor base64", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(switchtest.Binary(t), "serve", "--db", db, "--etcd", etcd, "--listen", "127.0.0.1:0",
				"--admin", "127.0.0.1:0", "--data-dir", t.TempDir())
			cmd.Env = os.Environ()
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.code || !strings.Contains(string(out), tc.want) {
				t.Fatalf("serve: %v (want exit %d and %q)\n%s", err, tc.code, tc.want, out)
			}
			if after := state(t, db, etcd); after != before {
				t.Fatalf("the refused switch changed something:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// state is what a refused switch must leave alone: the database's schema
// version, data keys and cards, and the config center's revision.
func state(t *testing.T, db, etcd string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, `SELECT (SELECT version FROM schema_version)::text || ' ' ||
			(SELECT string_agg(id || ':' || kek || ':' || md5(wrapped), ',' ORDER BY id) FROM data_keys) || ' ' ||
			(SELECT count(*) FROM cards) || ' ' || (SELECT count(*) FROM timer_tasks)`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := cl.Get(ctx, "/goldcard/config/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key)+"@"+strconv.FormatInt(kv.ModRevision, 10))
	}
	return s + " " + strings.Join(keys, ",")
}

// TestKEKRotation: a switch given a new KEK before the current one
// rewraps every data key and every bank's MAC key under the new one; a
// switch given only the new KEK then starts, opens the MAC key and finds
// the cards; one given only the old KEK no longer does.
func TestKEKRotation(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	db := ledgertest.NewDatabase(t)
	const pan = "6228480000007301"
	newKEK := strings.Repeat("5a", 32)
	d := switchtest.On(t, db, etcd)
	d.Start("--etcd", etcd)
	d.AddCard(pan, 100, 0)
	if out, err := switchtest.CLI(t, `{"listen": "`+switchtest.FreeAddr(t)+`", "dialect": "iso87-ascii", "acquirers": ["5555"], "mac": {"algorithm": "x9.19", "key": "00112233445566778899aabbccddeeff"}}`,
		"config", "put", "banks/signing", "-", "--etcd", etcd); err != nil {
		t.Fatalf("config put: %v\n%s", err, out)
	}
	d.Stop()

	both := switchtest.On(t, db, etcd)
	both.Env = []string{"GOLDCARD_KEK=" + newKEK + "," + switchtest.TestKEK}
	both.Start("--etcd", etcd)
	// While a switch without the new KEK is live, nothing is wrapped
	// under it: not a MAC key, not a data key.
	old := both.StartPeer()
	cmd := exec.Command(switchtest.Binary(t), "keys", "rewrap", "--admin", both.Admin)
	cmd.Env = append(os.Environ(), "GOLDCARD_OPERATOR=li.wei")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "give every switch this KEK first") {
		t.Fatalf("keys rewrap with a switch lacking the KEK: %v\n%s", err, out)
	}
	put := exec.Command(switchtest.Binary(t), "config", "put", "banks/signing", "-", "--etcd", etcd)
	put.Env = append(os.Environ(), "GOLDCARD_KEK="+newKEK)
	put.Stdin = strings.NewReader(`{"listen": "` + switchtest.FreeAddr(t) + `", "dialect": "iso87-ascii", "acquirers": ["5555"], "mac": {"algorithm": "x9.19", "key": "00112233445566778899aabbccddeeff"}}`)
	if out, err := put.CombinedOutput(); err == nil || !strings.Contains(string(out), "refused, nothing written") {
		t.Fatalf("config put under a KEK a switch lacks: %v\n%s", err, out)
	}
	old.Stop()
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	switchtest.WaitFor(t, "the stopped switch to leave the config center", func() bool {
		resp, err := cl.Get(context.Background(), "/goldcard/instances/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 1
	})
	cmd = exec.Command(switchtest.Binary(t), "keys", "rewrap", "--admin", both.Admin)
	cmd.Env = append(os.Environ(), "GOLDCARD_OPERATOR=li.wei")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": 2 data key(s); MAC keys of banks/signing") {
		t.Fatalf("keys rewrap: %v\n%s", err, out)
	}
	both.Stop()

	only := switchtest.On(t, db, etcd)
	only.Env = []string{"GOLDCARD_KEK=" + newKEK}
	only.Start("--etcd", etcd)
	if c := only.Card(pan); c.Balance != 100 {
		t.Fatalf("the card under the new KEK: %+v", c)
	}
	if !strings.Contains(only.Logs(), `"bank":"signing"`) {
		t.Fatalf("the MAC bank did not open under the new KEK:\n%s", only.Logs())
	}
	only.Stop()

	cmd = exec.Command(switchtest.Binary(t), "serve", "--db", db, "--etcd", etcd, "--listen", "127.0.0.1:0",
		"--admin", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), switchtest.KEKEnv)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "does not open") {
		t.Fatalf("serve with the KEK rotated out: %v\n%s", err, out)
	}
}

// TestNoDevelopmentKEKWhenExposed: a switch whose admin API other hosts
// reach (as in a container) never makes its own KEK, even on its embedded
// etcd: it refuses to start without one.
func TestNoDevelopmentKEKWhenExposed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(switchtest.Binary(t), "serve", "--db", ledgertest.UnusedDatabase(t), "--listen", "127.0.0.1:0",
		"--admin", "0.0.0.0:0", "--etcd-listen", switchtest.FreeAddr(t), "--data-dir", dir)
	cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_TOKEN=s3cret-token-of-the-test")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "never makes its own") {
		t.Fatalf("serve: %v\n%s", err, out)
	}
	if _, err := os.Stat(dir + "/dev.kek"); !os.IsNotExist(err) {
		t.Fatalf("a development KEK was made: %v", err)
	}
}
