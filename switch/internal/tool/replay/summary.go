package replay

import (
	"fmt"
	"io"
	"time"

	"github.com/goldcard/goldcard/switch/internal/fixture"
)

// printFailure writes one failed step and what differs.
func printFailure(w io.Writer, o fixture.Outcome) {
	fmt.Fprintf(w, "FAIL %s %s\n", o.Source.Label(), o.Title())
	if o.Problem != "" {
		fmt.Fprintf(w, "    %s\n", o.Problem)
	}
	for _, d := range o.Diffs {
		fmt.Fprintf(w, "    %s\n", d)
	}
}

// summary is the result of a replay, as --json prints it.
type summary struct {
	Sources    int             `json:"sources"`
	Steps      int             `json:"steps"`
	Passed     int             `json:"passed"`
	Failed     int             `json:"failed"`
	Unchecked  int             `json:"unchecked"`
	Skipped    int             `json:"skipped"`
	Unanswered int             `json:"-"`
	Seconds    float64         `json:"seconds"`
	Files      []sourceSummary `json:"files"`
	Failures   []failureReport `json:"failures"`
	Updated    []string        `json:"updated,omitempty"`
}

type sourceSummary struct {
	Source string `json:"source"`
	Steps  int    `json:"steps"`
	Failed int    `json:"failed"`
}

type failureReport struct {
	Source  string       `json:"source"`
	Step    int          `json:"step"`
	Name    string       `json:"name,omitempty"`
	Problem string       `json:"problem,omitempty"`
	Diffs   []diffReport `json:"diffs,omitempty"`
}

type diffReport struct {
	Field string `json:"field"`
	Want  string `json:"want"`
	Got   string `json:"got"`
}

func summarise(sources []*fixture.Source, outcomes []fixture.Outcome, took time.Duration) *summary {
	sum := &summary{Sources: len(sources), Steps: len(outcomes), Seconds: took.Seconds(), Failures: []failureReport{}}
	per := map[*fixture.Source]*sourceSummary{}
	for _, s := range sources {
		sum.Files = append(sum.Files, sourceSummary{Source: s.Label()})
	}
	for i, s := range sources {
		per[s] = &sum.Files[i]
	}
	for _, o := range outcomes {
		ps := per[o.Source]
		ps.Steps++
		switch o.Status {
		case fixture.Pass:
			sum.Passed++
		case fixture.Unchecked:
			sum.Unchecked++
		case fixture.Skip:
			sum.Skipped++
		case fixture.Fail:
			sum.Failed++
			ps.Failed++
			if o.Got == nil {
				sum.Unanswered++
			}
			fr := failureReport{Source: o.Source.Label(), Step: o.Step, Name: o.Name, Problem: o.Problem}
			for _, d := range o.Diffs {
				fr.Diffs = append(fr.Diffs, diffReport{Field: d.FieldName(), Want: d.WantShown(), Got: d.GotShown()})
			}
			sum.Failures = append(sum.Failures, fr)
		}
	}
	return sum
}

// plural is n and the word, with an s unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func (s *summary) print(w io.Writer, quiet bool) {
	if !quiet {
		for _, f := range s.Files {
			status := "ok  "
			if f.Failed > 0 {
				status = "FAIL"
			}
			fmt.Fprintf(w, "%s %s (%s)\n", status, f.Source, plural(f.Steps, "step"))
		}
	}
	for _, u := range s.Updated {
		fmt.Fprintf(w, "updated %s\n", u)
	}
	fmt.Fprintf(w, "%s, %s: %d passed, %d failed", plural(s.Sources, "conversation"), plural(s.Steps, "step"), s.Passed, s.Failed)
	if s.Unchecked > 0 {
		fmt.Fprintf(w, ", %d answered with nothing to compare", s.Unchecked)
	}
	if s.Skipped > 0 {
		fmt.Fprintf(w, ", %d skipped (withheld at capture)", s.Skipped)
	}
	fmt.Fprintf(w, " in %.2fs\n", s.Seconds)
}
