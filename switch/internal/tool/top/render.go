package top

import (
	"fmt"
	"strings"
)

// render draws a frame as text of at most width columns and, when
// height is positive, height lines.
func render(v *View, width, height int) string {
	var lines []string
	up := len(v.Instances) - v.down()
	title := fmt.Sprintf("goldcard top  %d/%d instances up", up, len(v.Instances))
	if v.Interval > 0 {
		title += fmt.Sprintf("  over %.1fs", v.Interval)
	} else {
		title += "  (rates from the next frame)"
	}
	lines = append(lines, padBetween(title, v.At.Format("2006-01-02 15:04:05 UTC"), width), "")

	lines = append(lines, fmt.Sprintf("%-10s %7s %5s %6s %6s %6s %6s %5s  %s", "BANK", "REQ/S", "OK%", "P50", "P99", "MISS/S", "RDM/S", "LINKS", "CODES"))
	bankRow := func(b *Bank) string {
		return fmt.Sprintf("%-10s %7s %5s %6s %6s %6s %6s %5d  %s", cut(b.Bank, 10), fmtRate(b.Requests, v.Interval),
			fmtPercent(b.Approval), fmtSeconds(b.P50), fmtSeconds(b.P99), fmtRate(b.DeadlineMisses, v.Interval),
			fmtRate(b.Redemptions, v.Interval), b.LinksUp, fmtCodes(b.Codes))
	}
	instLines := []string{"", fmt.Sprintf("%-21s %4s %-9s %7s %6s %4s %4s %5s %7s", "INSTANCE", "UP", "VERSION", "CONFIG", "LEADER", "ETCD", "PG", "INFL", "REQ/S")}
	for _, i := range v.Instances {
		if !i.Up {
			instLines = append(instLines, fmt.Sprintf("%-21s %4s %s", cut(i.Addr, 21), "DOWN", i.Error))
			continue
		}
		r := "-"
		if i.Requests != nil {
			r = fmtRate(*i.Requests, v.Interval)
		}
		instLines = append(instLines, fmt.Sprintf("%-21s %4s %-9s %7d %6s %4s %4s %5d %7s", cut(i.Addr, 21), "up",
			cut(i.Version, 9), i.ConfigRevision, yesNo(&i.TimerLeader, "yes", ""), yesNo(i.EtcdUp, "up", "DOWN"),
			yesNo(i.PostgresUp, "up", "DOWN"), i.InFlight, r))
	}
	rows := make([]string, 0, len(v.Banks)+1)
	for i := range v.Banks {
		rows = append(rows, bankRow(&v.Banks[i]))
	}
	if len(v.Banks) == 0 {
		rows = append(rows, "(no bank has a listener yet)")
	}
	total := ""
	if v.Total != nil {
		total = bankRow(v.Total)
	}
	if height > 0 {
		// Keep the instances (as many as fit) and the total; cut banks,
		// the busiest kept, saying how many are left out.
		room := height - len(lines) - len(instLines)
		if total != "" {
			room--
		}
		if room < 2 {
			room = 2
		}
		if len(rows) > room {
			left := len(rows) - (room - 1)
			rows = append(rows[:room-1], fmt.Sprintf("... %d more banks, less busy", left))
		}
	}
	lines = append(lines, rows...)
	if total != "" {
		lines = append(lines, total)
	}
	lines = append(lines, instLines...)
	if height > 0 && len(lines) > height {
		lines = append(lines[:height-1], fmt.Sprintf("... %d more lines", len(lines)-height+1))
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(cut(l, width))
		b.WriteByte('\n')
	}
	return b.String()
}

// printable is s on one line, without control characters, as a proxy's
// error page may hold them.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	return cut(strings.Join(strings.Fields(s), " "), 300)
}

func padBetween(left, right string, width int) string {
	if gap := width - len(left) - len(right); gap > 0 {
		return left + strings.Repeat(" ", gap) + right
	}
	return left
}

// cut shortens s to n runes.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[:n])
	}
	return string(r[:n-1]) + "~"
}

func fmtRate(r, interval float64) string {
	switch {
	case interval <= 0:
		return "-"
	case r >= 10000:
		return fmt.Sprintf("%.0f", r)
	case r >= 100:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

func fmtPercent(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *p*100)
}

func fmtSeconds(s *float64) string {
	switch {
	case s == nil:
		return "-"
	case *s < 0.1:
		return fmt.Sprintf("%.1fms", *s*1000)
	case *s < 1:
		return fmt.Sprintf("%.0fms", *s*1000)
	}
	return fmt.Sprintf("%.2fs", *s)
}

// fmtCodes is the three commonest codes with their whole-percent shares.
func fmtCodes(cs []Share) string {
	parts := make([]string, 0, 3)
	for i, c := range cs {
		if i == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", c.Code, c.Share*100))
	}
	return strings.Join(parts, " ")
}

func yesNo(b *bool, yes, no string) string {
	switch {
	case b == nil:
		return "-"
	case *b:
		return yes
	}
	return no
}
