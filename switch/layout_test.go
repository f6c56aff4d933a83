package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/goldcard/goldcard/"

// goPackage is what go list says of one package.
type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// TestLayout holds the packages to their jobs: what each may import.
func TestLayout(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	under := func(p, dir string) bool { return p == module+dir || strings.HasPrefix(p, module+dir+"/") }
	libraries := []string{"iso", "ledger", "fund", "locks", "config"}
	for _, p := range pkgs {
		path := strings.TrimPrefix(p.ImportPath, module)
		project := func(list []string) []string {
			var out []string
			for _, i := range list {
				if strings.HasPrefix(i, module) {
					out = append(out, strings.TrimPrefix(i, module))
				}
			}
			return out
		}
		imports, deps := project(p.Imports), project(p.Deps)
		never := func(list []string, what string, dirs ...string) {
			for _, i := range list {
				for _, d := range dirs {
					if i == d || strings.HasPrefix(i, d+"/") {
						t.Errorf("%s %s %s", path, what, i)
					}
				}
			}
		}
		switch {
		case path == "switch":
			for _, i := range imports {
				if !slices.Contains([]string{"switch/internal/daemon", "switch/internal/cli"}, i) && !strings.HasPrefix(i, "switch/internal/tool/") {
					t.Errorf("switch (main) imports %s: main only wires the daemon and the tools", i)
				}
			}
		case under(p.ImportPath, "switch/internal/tool"), under(p.ImportPath, "switch/internal/client"), under(p.ImportPath, "switch/internal/cli"):
			never(deps, "depends on", "switch/internal/daemon", "switch/internal/link", "switch/internal/issuer", "switch/internal/admin")
		case under(p.ImportPath, "switch/internal/link"):
			never(deps, "depends on", "ledger", "fund", "locks", "switch/internal/issuer", "switch/internal/daemon", "switch/internal/admin")
		case under(p.ImportPath, "switch/internal/issuer"):
			for _, i := range p.Imports {
				if i == "net" || i == "net/http" {
					t.Errorf("%s imports %s: the issuer decides, the link talks", path, i)
				}
			}
			never(deps, "depends on", "switch/internal/link", "switch/internal/daemon", "switch/internal/admin", "switch/internal/timer")
		case under(p.ImportPath, "switch/internal/metric"):
			if len(deps) > 0 {
				t.Errorf("%s depends on %v: it only names series", path, deps)
			}
		case slices.ContainsFunc(libraries, func(l string) bool { return under(p.ImportPath, l) }):
			never(deps, "depends on", "switch")
		}
	}
}
