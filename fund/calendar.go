package fund

import (
	"fmt"
	"time"
)

// Calendar is the fund's trading calendar: weekdays except holidays.
type Calendar struct {
	holidays map[time.Time]bool
}

// NewCalendar reads holidays (YYYY-MM-DD) by year.
func NewCalendar(holidays map[int][]string) (Calendar, error) {
	c := Calendar{holidays: map[time.Time]bool{}}
	for _, days := range holidays {
		for _, d := range days {
			t, err := time.Parse(time.DateOnly, d)
			if err != nil {
				return c, fmt.Errorf("fund: holiday %q: %w", d, err)
			}
			c.holidays[t] = true
		}
	}
	return c, nil
}

// TradingDay reports whether day (a date at midnight UTC, as Day returns)
// is a trading day.
func (c Calendar) TradingDay(day time.Time) bool {
	switch day.Weekday() {
	case time.Saturday, time.Sunday:
		return false
	}
	return !c.holidays[day]
}

// NextTradingDay returns the first trading day after day.
func (c Calendar) NextTradingDay(day time.Time) time.Time {
	for d := day.AddDate(0, 0, 1); ; d = d.AddDate(0, 0, 1) {
		if c.TradingDay(d) {
			return d
		}
	}
}

// At returns the instant a clock time ("15:00") falls at on day in zone.
func At(day time.Time, clock string, zone *time.Location) (time.Time, error) {
	hm, err := time.Parse("15:04", clock)
	if err != nil {
		return time.Time{}, fmt.Errorf("fund: time of day %q: %w", clock, err)
	}
	return time.Date(day.Year(), day.Month(), day.Day(), hm.Hour(), hm.Minute(), 0, 0, zone), nil
}

// DayIn is the date of t in zone, as midnight UTC.
func DayIn(t time.Time, zone *time.Location) time.Time {
	y, m, d := t.In(zone).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
