package client

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseAmount reads a human amount with at most two decimals ("100",
// "100.5", "100.50") as minor units. It refuses signs, exponents and
// anything that is not plain digits.
func ParseAmount(s string) (int64, error) {
	bad := fmt.Errorf("amount %q: want digits with at most two decimals, such as 100.00", s)
	whole, frac, hasDot := strings.Cut(strings.TrimSpace(s), ".")
	if whole == "" || (hasDot && (frac == "" || len(frac) > 2)) {
		return 0, bad
	}
	for _, part := range []string{whole, frac} {
		for _, r := range part {
			if r < '0' || r > '9' {
				return 0, bad
			}
		}
	}
	for len(frac) < 2 {
		frac += "0"
	}
	n, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil || n > 999_999_999_999 {
		return 0, errors.New("amount is too large")
	}
	return n, nil
}

// FormatAmount writes minor units with two decimals.
func FormatAmount(n int64) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	return fmt.Sprintf("%s%d.%02d", sign, n/100, n%100)
}
