package kek

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Errors.
var (
	// ErrNone is a switch given no KEK.
	ErrNone = errors.New("kek: no key-encryption key: give --kek-file FILE or $GOLDCARD_KEK")
	// ErrUnknown is something wrapped under a KEK this process was not
	// given.
	ErrUnknown = errors.New("kek: wrapped under a key-encryption key this process was not given")
	// ErrOpen is a wrapped key that does not open under the KEK it names:
	// altered, or bound to another purpose.
	ErrOpen = errors.New("kek: the wrapped key does not open under its KEK")
)

// Env is the environment variable that holds KEKs in place of a file.
const Env = "GOLDCARD_KEK"

// DevFile is the development KEK's file name in a switch's data directory.
const DevFile = "dev.kek"

// Set is the KEKs a process holds: the current one, which wraps, and any
// earlier ones, which still unwrap what they wrapped until it is rewrapped.
// It is safe for concurrent use.
type Set struct {
	current string
	keys    map[string]cipher.AEAD
	ids     []string // current first
}

// Parse reads KEKs, one per line (or separated by commas), each 32 bytes
// as 64 hex digits or in base64; the first is the current one. Blank lines
// and lines starting with # are skipped.
func Parse(b []byte) (*Set, error) {
	s := &Set{keys: map[string]cipher.AEAD{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			n++
			raw, err := decode(f)
			if err != nil {
				return nil, fmt.Errorf("kek: key %d: %w", n, err)
			}
			id := CheckValue(raw)
			if _, dup := s.keys[id]; dup {
				continue
			}
			block, _ := aes.NewCipher(raw) // 32 bytes: AES-256
			aead, _ := cipher.NewGCMWithRandomNonce(block)
			clear(raw)
			s.keys[id] = aead
			s.ids = append(s.ids, id)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kek: reading keys: %w", err)
	}
	if len(s.ids) == 0 {
		return nil, errors.New("kek: no key given (32 bytes as 64 hex digits or base64, one per line)")
	}
	s.current = s.ids[0]
	return s, nil
}

func decode(f string) ([]byte, error) {
	if raw, err := hex.DecodeString(f); err == nil {
		if len(raw) != 32 {
			return nil, fmt.Errorf("%d bytes, not 32", len(raw))
		}
		return raw, nil
	}
	raw, err := base64.StdEncoding.DecodeString(f)
	if err != nil {
		return nil, errors.New("neither hex nor base64")
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("%d bytes, not 32", len(raw))
	}
	return raw, nil
}

// CheckValue names a KEK without revealing it: the first 4 bytes of an
// HMAC-SHA-256 of a fixed text under it, in hex. What was wrapped under a
// KEK stores its check value beside it, so that the right KEK is used and
// a wrong one is named as such.
func CheckValue(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("goldcard key-encryption key check value"))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// Load is the KEKs of file, else of $GOLDCARD_KEK; ErrNone without
// either.
func Load(file string) (*Set, error) {
	if file != "" {
		fi, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("--kek-file: %w", err)
		}
		if err := checkMode(file, fi); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--kek-file: %w", err)
		}
		s, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("--kek-file %s: %w", file, err)
		}
		return s, nil
	}
	if v, ok := os.LookupEnv(Env); ok {
		s, err := Parse([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("$%s: %w", Env, err)
		}
		return s, nil
	}
	return nil, ErrNone
}

// ForTool is Load for a tool working on a switch's database: without a
// file or $GOLDCARD_KEK, the development KEK of the switch whose data
// directory is dataDir, if it has made one.
func ForTool(file, dataDir string) (*Set, error) {
	s, err := Load(file)
	if !errors.Is(err, ErrNone) {
		return s, err
	}
	path := filepath.Join(dataDir, DevFile)
	b, rerr := os.ReadFile(path)
	if rerr != nil {
		return nil, fmt.Errorf("%w (or run where %s is)", ErrNone, path)
	}
	if s, err = Parse(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// checkMode refuses a KEK file others may change, and one of this
// process's own that others may read; a read-only secret another user
// mounted for it (a container's, mode 0444) is taken.
func checkMode(file string, fi os.FileInfo) error {
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 {
		return fmt.Errorf("--kek-file %s: others may change it (mode %04o): chmod 600 it", file, perm)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) == os.Getuid() && perm&0o044 != 0 {
		return fmt.Errorf("--kek-file %s: others may read it (mode %04o): make it readable by its owner only (chmod 600)", file, perm)
	}
	return nil
}

// Dev is the development KEK in dir, made (readable by its owner only) if
// missing; made reports whether it was.
func Dev(dir string) (s *Set, path string, made bool, err error) {
	path = filepath.Join(dir, DevFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		b = []byte("# Development key-encryption key, made by goldcard serve: not for production.\n" + hex.EncodeToString(raw) + "\n")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, path, false, fmt.Errorf("making a development KEK: %w", err)
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, path, false, fmt.Errorf("making a development KEK: %w", err)
		}
		made = true
	} else if err != nil {
		return nil, path, false, fmt.Errorf("reading the development KEK: %w", err)
	}
	s, err = Parse(b)
	if err != nil {
		return nil, path, false, fmt.Errorf("%s: %w", path, err)
	}
	return s, path, made, nil
}

// ID is the current KEK's check value.
func (s *Set) ID() string { return s.current }

// IDs are the check values of every KEK held, the current one first.
func (s *Set) IDs() []string { return append([]string(nil), s.ids...) }

// Wrap seals key under the current KEK, bound to aad (what it is for).
func (s *Set) Wrap(key, aad []byte) ([]byte, error) {
	return s.keys[s.current].Seal(nil, nil, key, aad), nil
}

// Unwrap opens a key wrapped under the KEK kekID for aad.
func (s *Set) Unwrap(kekID string, wrapped, aad []byte) ([]byte, error) {
	aead, ok := s.keys[kekID]
	if !ok {
		return nil, fmt.Errorf("%w: it is under KEK %s; this process holds %s", ErrUnknown, kekID, strings.Join(s.ids, ", "))
	}
	key, err := aead.Open(nil, nil, wrapped, aad)
	if err != nil {
		return nil, fmt.Errorf("%w %s", ErrOpen, kekID)
	}
	return key, nil
}
