package replay

import (
	"bytes"
	"testing"
	"time"

	"github.com/goldcard/goldcard/switch/internal/fixture"
)

// TestSummary: outcomes are counted per conversation and in all, an
// unanswered failure is told apart (it fails --update), and the text
// names every conversation but under --quiet.
func TestSummary(t *testing.T) {
	a := &fixture.Source{Path: "core/purchase.yaml", File: &fixture.File{}}
	b := &fixture.Source{Path: "session.pcapng", Conn: 2, File: &fixture.File{}}
	outcomes := []fixture.Outcome{
		{Source: a, Step: 1, Status: fixture.Pass},
		{Source: a, Step: 2, Status: fixture.Fail, Diffs: []fixture.Diff{{Field: 39, Want: "00", Got: "51"}}, Got: &fixture.Message{}},
		{Source: b, Step: 1, Status: fixture.Fail, Problem: "no answer within 10s"},
		{Source: b, Step: 2, Status: fixture.Unchecked},
		{Source: b, Step: 3, Status: fixture.Skip},
	}
	sum := summarise([]*fixture.Source{a, b}, outcomes, 1500*time.Millisecond)
	if sum.Sources != 2 || sum.Steps != 5 || sum.Passed != 1 || sum.Failed != 2 || sum.Unchecked != 1 || sum.Skipped != 1 || sum.Unanswered != 1 {
		t.Errorf("summary %+v", sum)
	}
	if len(sum.Files) != 2 || sum.Files[0] != (sourceSummary{"core/purchase.yaml", 2, 1}) || sum.Files[1] != (sourceSummary{"session.pcapng#2", 3, 1}) {
		t.Errorf("per conversation %+v", sum.Files)
	}
	if len(sum.Failures) != 2 || sum.Failures[0].Diffs[0].Field != "DE39" || sum.Failures[1].Problem == "" {
		t.Errorf("failures %+v", sum.Failures)
	}

	var out bytes.Buffer
	sum.print(&out, false)
	want := "FAIL core/purchase.yaml (2 steps)\nFAIL session.pcapng#2 (3 steps)\n" +
		"2 conversations, 5 steps: 1 passed, 2 failed, 1 answered with nothing to compare, 1 skipped (withheld at capture) in 1.50s\n"
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	sum.print(&out, true)
	if want := "2 conversations, 5 steps: 1 passed, 2 failed, 1 answered with nothing to compare, 1 skipped (withheld at capture) in 1.50s\n"; out.String() != want {
		t.Errorf("printed quietly\n%s", out.String())
	}
}
