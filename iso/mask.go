package iso

import (
	"regexp"
	"strings"
)

// MaskPAN hides all of a PAN but its first six and last four digits. A
// value too short for that to leave at least three digits hidden keeps
// only its last four, or nothing.
func MaskPAN(pan string) string {
	n := len(pan)
	switch {
	case n >= 13:
		return pan[:6] + strings.Repeat("*", n-10) + pan[n-4:]
	case n >= 8:
		return strings.Repeat("*", n-4) + pan[n-4:]
	default:
		return strings.Repeat("*", n)
	}
}

// digitRun is anything that could be a PAN: 12 digits or more in a row.
var digitRun = regexp.MustCompile(`[0-9]{12,}`)

// MaskPANs masks, as MaskPAN does, every run of 12 or more digits in s.
// It is for text that may carry what someone else typed (a URL path, a
// JSON error naming a field) on its way to an answer or a log, where a
// card number must not arrive whole.
func MaskPANs(s string) string {
	return digitRun.ReplaceAllStringFunc(s, MaskPAN)
}
