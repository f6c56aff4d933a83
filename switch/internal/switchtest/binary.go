package switchtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// The switch binary, built once by the first test that runs it, in a
// directory Main removes.
var (
	buildOnce   sync.Once
	goldcardBin string
	buildErr    error
	binDir      string
)

// Binary is the goldcard binary, built on first use.
func Binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "goldcard-bin"); buildErr != nil {
			return
		}
		goldcardBin = filepath.Join(binDir, "goldcard")
		out, err := exec.Command("go", "build", "-o", goldcardBin, "github.com/goldcard/goldcard/switch").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building goldcard: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return goldcardBin
}

// Main runs a package's tests and removes the switch binary they built.
func Main(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Root is the repository's top directory, for its testdata.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no source path for switchtest")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}
