package schedules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MinInterval is the shortest "@every" interval (JetStream's).
const MinInterval = time.Second

// spec is a parsed schedule: an interval, or a cron expression in a time
// zone.
type spec struct {
	every time.Duration // > 0 for "@every"
	cron  *cronSpec
	loc   *time.Location
}

// FieldError names what is wrong with a schedule, and where.
type FieldError struct {
	Field   string // "spec", "spec.seconds", … "time_zone", "service", …
	Problem string
}

func (e *FieldError) Error() string { return "schedules: " + e.Field + ": " + e.Problem }

var predefined = map[string]string{
	"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
	"@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *",
}

// parseSpec parses s ("@every <duration>", a predefined name, or six cron
// fields) in the time zone tz ("" is UTC; only for cron).
func parseSpec(s, tz string) (*spec, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutPrefix(s, "@every "); ok {
		if tz != "" {
			return nil, &FieldError{"time_zone", "an @every schedule has no time zone"}
		}
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, &FieldError{"spec", fmt.Sprintf("@every %q: not a duration (say 30s, 5m, 1h)", d)}
		}
		if dur < MinInterval || dur%time.Second != 0 {
			return nil, &FieldError{"spec", fmt.Sprintf("@every %v: want whole seconds, at least %v", dur, MinInterval)}
		}
		return &spec{every: dur}, nil
	}
	if strings.HasPrefix(s, "@at ") {
		return nil, &FieldError{"spec", "@at is a one-shot delay: use tasks.Call.At"}
	}
	loc := time.UTC
	if tz != "" {
		var err error
		if loc, err = time.LoadLocation(tz); err != nil || tz == "Local" {
			return nil, &FieldError{"time_zone", fmt.Sprintf("%q is not an IANA time zone name", tz)}
		}
	}
	expr := s
	if p, ok := predefined[s]; ok {
		expr = p
	} else if strings.HasPrefix(s, "@") {
		return nil, &FieldError{"spec", fmt.Sprintf("%q: unknown name (use @every <duration>, @yearly, @monthly, @weekly, @daily, @hourly or six cron fields)", s)}
	}
	c, err := parseCron(expr)
	if err != nil {
		return nil, err
	}
	return &spec{cron: c, loc: loc}, nil
}

// next returns the first fire time after t; zero if none within 5 years.
func (s *spec) next(t time.Time) time.Time {
	if s.every > 0 {
		return t.Truncate(time.Second).Add(s.every)
	}
	return s.cron.next(t, s.loc)
}

type bounds struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	secondsB = bounds{"seconds", 0, 59, nil}
	minutesB = bounds{"minutes", 0, 59, nil}
	hoursB   = bounds{"hours", 0, 23, nil}
	domB     = bounds{"day_of_month", 1, 31, nil}
	monthsB  = bounds{"month", 1, 12, map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}}
	dowB     = bounds{"day_of_week", 0, 6, map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}}
)

type cronSpec struct {
	sec, min, hour, dom, month, dow uint64
	domStar, dowStar                bool
}

func parseCron(expr string) (*cronSpec, error) {
	f := strings.Fields(expr)
	if len(f) != 6 {
		return nil, &FieldError{"spec", fmt.Sprintf("%q: want six fields (seconds minutes hours day-of-month month day-of-week), got %d", expr, len(f))}
	}
	var c cronSpec
	var err error
	var star bool
	for i, p := range []struct {
		b   bounds
		dst *uint64
	}{{secondsB, &c.sec}, {minutesB, &c.min}, {hoursB, &c.hour}, {domB, &c.dom}, {monthsB, &c.month}, {dowB, &c.dow}} {
		if *p.dst, star, err = parseField(f[i], p.b); err != nil {
			return nil, &FieldError{"spec." + p.b.name, err.Error()}
		}
		switch i {
		case 3:
			c.domStar = star
		case 5:
			c.dowStar = star
		}
	}
	return &c, nil
}

func parseField(field string, b bounds) (uint64, bool, error) {
	var bits uint64
	star := false
	for _, expr := range strings.Split(field, ",") {
		rangePart, stepPart, hasStep := strings.Cut(expr, "/")
		var lo, hi int
		var err error
		if rangePart == "*" || rangePart == "?" {
			lo, hi, star = b.min, b.max, !hasStep
		} else {
			l, h, isRange := strings.Cut(rangePart, "-")
			if lo, err = value(l, b); err != nil {
				return 0, false, err
			}
			hi = lo
			if isRange {
				if hi, err = value(h, b); err != nil {
					return 0, false, err
				}
			} else if hasStep {
				hi = b.max
			}
		}
		step := 1
		if hasStep {
			if step, err = strconv.Atoi(stepPart); err != nil || step <= 0 {
				return 0, false, fmt.Errorf("%q: the step must be a positive number", expr)
			}
		}
		if lo > hi {
			return 0, false, fmt.Errorf("%q: the range ends before it starts", expr)
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, star, nil
}

func value(s string, b bounds) (int, error) {
	if v, ok := b.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < b.min || v > b.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", v, b.min, b.max)
	}
	return v, nil
}

var errNoFireTime = errors.New("schedules: no fire time within 5 years")

func has(bits uint64, v int) bool { return bits&(1<<uint(v)) != 0 }

func (c *cronSpec) dayMatches(t time.Time) bool {
	dom, dow := has(c.dom, t.Day()), has(c.dow, int(t.Weekday()))
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// next is the first time after t, in loc's wall clock, whose fields all
// match. Each step is made with time.Date on the wall clock, so a wall
// time that does not exist on a day (the hour skipped when clocks go
// forward) does not fire that day, and one that occurs twice (the hour
// repeated when clocks go back) fires once, the first time.
func (c *cronSpec) next(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc).Truncate(time.Second).Add(time.Second)
	limit := t.Year() + 5
wrap:
	if t.Year() > limit {
		return time.Time{}
	}
	for !has(c.month, int(t.Month())) {
		t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
		if t.Month() == time.January {
			goto wrap
		}
	}
	for !c.dayMatches(t) {
		t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
		if t.Day() == 1 {
			goto wrap
		}
	}
	for !has(c.hour, t.Hour()) {
		d := t.Day()
		n := time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
		if !n.After(t) {
			// The next wall hour does not exist (clocks go forward) and
			// time.Date went back: step in absolute time instead.
			n = t.Truncate(time.Hour).Add(time.Hour)
		}
		t = n
		if t.Day() != d {
			goto wrap
		}
	}
	for !has(c.min, t.Minute()) {
		h := t.Hour()
		n := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute()+1, 0, 0, loc)
		if !n.After(t) {
			n = t.Truncate(time.Minute).Add(time.Minute)
		}
		t = n
		if t.Hour() != h {
			goto wrap
		}
	}
	for !has(c.sec, t.Second()) {
		m := t.Minute()
		t = t.Truncate(time.Second).Add(time.Second)
		if t.Minute() != m {
			goto wrap
		}
	}
	return t
}
