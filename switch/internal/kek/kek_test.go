package kek

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	hexKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	other  = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

func TestParse(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	for _, tc := range []struct {
		name, in, err string
		n             int
	}{
		{"hex", hexKey, "", 1},
		{"base64", b64, "", 1},
		{"lines and comments", "# current\n" + other + "\n\n# earlier, kept to unwrap\n" + hexKey + "\n", "", 2},
		{"commas", other + "," + hexKey, "", 2},
		{"twice", hexKey + "\n" + hexKey, "", 1},
		{"short", hexKey[:62], "31 bytes", 0},
		{"garbage", "not a key", "neither hex nor base64", 0},
		{"empty", "# nothing\n", "no key given", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse: %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), tc.in) && len(tc.in) > 8 {
					t.Fatalf("the error repeats the input: %v", err)
				}
				return
			}
			if err != nil || len(s.IDs()) != tc.n {
				t.Fatalf("Parse: %v, %v", s, err)
			}
		})
	}
}

// TestWrapAcrossKEKs: what one KEK wrapped is opened by a set holding it,
// current or not, bound to what it was wrapped for; a set without it names
// the KEK it needs.
func TestWrapAcrossKEKs(t *testing.T) {
	old, _ := Parse([]byte(hexKey))
	both, _ := Parse([]byte(other + "\n" + hexKey))
	alone, _ := Parse([]byte(other))
	w, _ := old.Wrap([]byte("secret"), []byte("aad"))
	if got, err := both.Unwrap(old.ID(), w, []byte("aad")); err != nil || string(got) != "secret" {
		t.Fatalf("unwrap under the earlier KEK of a set: %q %v", got, err)
	}
	if _, err := both.Unwrap(old.ID(), w, []byte("other aad")); !errors.Is(err, ErrOpen) {
		t.Fatalf("unwrap for another purpose: %v, want ErrOpen", err)
	}
	if _, err := alone.Unwrap(old.ID(), w, []byte("aad")); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), old.ID()) {
		t.Fatalf("unwrap without the KEK: %v, want ErrUnknown naming %s", err, old.ID())
	}
	if both.ID() != alone.ID() || both.ID() == old.ID() || len(both.ID()) != 8 {
		t.Fatalf("check values %s %s %s", both.ID(), alone.ID(), old.ID())
	}
}

func TestLoadAndDev(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(Env, "")
	os.Unsetenv(Env)
	if _, err := Load(""); !errors.Is(err, ErrNone) {
		t.Fatalf("Load with nothing: %v, want ErrNone", err)
	}
	if _, err := ForTool("", dir); !errors.Is(err, ErrNone) {
		t.Fatalf("ForTool before a development KEK: %v, want ErrNone", err)
	}
	s, path, made, err := Dev(dir)
	if err != nil || !made || path != filepath.Join(dir, DevFile) {
		t.Fatalf("Dev: %v %s %v", made, path, err)
	}
	again, _, made, err := Dev(dir)
	if err != nil || made || again.ID() != s.ID() {
		t.Fatalf("Dev again: %v %v, want the same KEK", made, err)
	}
	if tool, err := ForTool("", dir); err != nil || tool.ID() != s.ID() {
		t.Fatalf("ForTool: %v %v", tool, err)
	}
	file := filepath.Join(dir, "kek")
	if err := os.WriteFile(file, []byte(hexKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(Env, other)
	if f, err := Load(file); err != nil || f.ID() == s.ID() {
		t.Fatalf("Load(file) over $%s: %v", Env, err)
	}
	if e, err := Load(""); err != nil || e.ID() != CheckValue(mustHex(other)) {
		t.Fatalf("Load from $%s: %v", Env, err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Load of a file others can read: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--kek-file") {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

func mustHex(s string) []byte {
	b, err := decode(s)
	if err != nil {
		panic(err)
	}
	return b
}
