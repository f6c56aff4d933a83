package replay_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/goldcard/goldcard/switch/internal/fixture"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// replayCLI runs goldcard replay against d and returns its output and
// exit code.
func replayCLI(t *testing.T, d *switchtest.Switch, args ...string) (string, int) {
	t.Helper()
	out, err := switchtest.CLI(t, "", append([]string{"replay", "--addr", d.Bank, "--admin", d.Admin}, args...)...)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out, code
}

// TestReplayConversations replays the conversations kept in the repo
// (every flow of the wire contract and balance payment, and a dumpcap
// capture) against a fresh switch.
func TestReplayConversations(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	out, code := replayCLI(t, d, filepath.Join(switchtest.Root(t), "testdata", "replay"))
	if code != 0 || !strings.Contains(out, " 0 failed") {
		t.Fatalf("replay exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "session.pcapng#2") {
		t.Errorf("the packet capture was not replayed:\n%s", out)
	}
}

// TestCaptureAndReplay records a session with serve --capture, replays
// it against a fresh switch, then breaks one expectation.
func TestCaptureAndReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := switchtest.Start(t, "--capture", dir)
	const (
		cash    = "6228480000000801"
		fundPAN = "6228480000000802"
		track2  = "6228480000000801=30121010000012345678"
		pinBlk  = "3A7F2C9D1E4B8F60"
	)
	a.AddCard(cash, 100000, 0)
	a.AddCard(fundPAN, 0, 500000)

	bank := switchtest.ConnectBank(t, a.Bank)
	switchtest.WantCode(t, bank.Send("0800", bank.Fields(map[int]string{70: "001", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""})), "00")
	purchase := bank.Fields(map[int]string{2: cash, 3: "000000", 4: "000000002500", 35: track2, 52: pinBlk})
	switchtest.WantCode(t, bank.Send("0200", purchase), "00")
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: fundPAN, 3: "000000", 4: "000000030000"})), "00")
	switchtest.WantCode(t, bank.Send("0100", bank.Fields(map[int]string{2: cash, 3: "010000", 4: "000000010000", 52: pinBlk})), "00")
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: cash, 3: "000000", 4: "000000900000"})), "51")
	rev := bank.Fields(map[int]string{2: cash, 3: "000000", 4: "000000002500", 37: purchase[37],
		90: "0200" + purchase[11] + purchase[7] + "00000001234" + "00000000000"})
	switchtest.WantCode(t, bank.Send("0400", rev), "00")

	// Two links debiting one card at once: the capture keeps the order
	// the switch committed them in.
	var wg sync.WaitGroup
	for range 2 {
		b := switchtest.ConnectBank(t, a.Bank)
		wg.Go(func() {
			for range 20 {
				switchtest.WantCode(t, b.Send("0200", b.Fields(map[int]string{2: cash, 3: "000000", 4: "000000000100"})), "00")
			}
		})
	}
	wg.Wait()
	// A frame that cannot be unpacked, and one whose MTI cannot be read.
	raw := switchtest.DialRaw(t, a.Bank)
	if r := raw.RoundTrip(t, []byte("0200"+"7000000000000000"+"16"+cash+"00")); !strings.HasPrefix(string(r), "0210") {
		t.Fatalf("cut frame answered %q", r)
	}
	raw.Write(t, []byte("ZZZZ"))
	a.Stop()

	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) != 4 {
		t.Fatalf("capture files: %v %v", files, err)
	}
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	for _, secret := range []string{cash, fundPAN, track2, pinBlk} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("the capture holds %s", secret)
		}
	}
	if !strings.Contains(all.String(), "622848") || !strings.Contains(all.String(), "withheld: 4") {
		t.Errorf("capture lacks stand-in PANs or the withheld frame:\n%s", all.String())
	}
	a.AssertNoSecrets(cash, fundPAN, track2, pinBlk)

	b := switchtest.Start(t)
	out, code := replayCLI(t, b, dir)
	if code != 0 || !strings.Contains(out, "46 passed, 0 failed, 2 skipped") {
		t.Fatalf("replay of the capture exited %d:\n%s", code, out)
	}

	// One expected response code changed: a non-zero exit and a diff that
	// names the field.
	fx, err := fixture.Load(files[0]) // the first link's: sign-on, then the purchase
	if err != nil {
		t.Fatal(err)
	}
	fx.Steps[1].Response.Fields[39] = "05"
	edited := filepath.Join(t.TempDir(), "edited.yaml")
	if err := fixture.Save(edited, fx); err != nil {
		t.Fatal(err)
	}
	c := switchtest.Start(t)
	out, code = replayCLI(t, c, edited)
	if code != 1 || !regexp.MustCompile(`FAIL .*edited.yaml step 2 .*\n\s+DE39: want "05", got "00"`).MatchString(out) {
		t.Fatalf("replay of the edited fixture exited %d:\n%s", code, out)
	}

	// --update writes the answer back and keeps the patterns.
	out, code = replayCLI(t, c, "--update", edited)
	if code != 0 {
		t.Fatalf("replay --update exited %d:\n%s", code, out)
	}
	fx, err = fixture.Load(edited)
	if err != nil {
		t.Fatal(err)
	}
	if got := fx.Steps[1].Response.Fields[39]; got != "00" {
		t.Errorf("after --update DE39 = %q", got)
	}
	if got := fx.Steps[1].Response.Fields[38]; got != fixture.Volatile[38] {
		t.Errorf("after --update DE38 = %q, want the pattern", got)
	}
}

// TestReplayUsage: bad input gets a clear message and a non-zero exit.
func TestReplayUsage(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("steps:\n  - request: {mti: \"0200\", fields: {4: 000000001000}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"replay"}, "name at least one fixture", 2},
		{[]string{"replay", "no/such/dir"}, "no such file", 2},
		{[]string{"replay", "--header", "ascii9", filepath.Join(switchtest.Root(t), "testdata", "replay")}, "--header", 2},
		{[]string{"replay", "--addr", "127.0.0.1:1", "--no-cards", bad}, "write field values in quotes", 1},
	} {
		out, err := switchtest.CLI(t, "", tc.args...)
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("goldcard %s: %v, output:\n%s\nwant exit %d and %q", strings.Join(tc.args, " "), err, out, tc.code, tc.want)
		}
	}
}
