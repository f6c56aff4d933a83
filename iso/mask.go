package iso

import "strings"

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
