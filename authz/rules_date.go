package authz

import (
	"regexp"
	"strconv"
	"time"
)

// The dates a match of type date compares: RFC 3339 date-times (with
// optional fractional seconds of up to 9 digits) and full dates, which
// stand for midnight UTC, in the years 1678 to 2261 so that every such
// instant fits OPA's nanosecond time. Space Cloud took the same two
// forms (time.RFC3339Nano, then 2006-01-02).
//
// The Rego module checks a string against these patterns, and the day
// against its month, before it calls time.parse_rfc3339_ns: that built-in
// fails on anything else, which under strict built-in errors would be an
// evaluation error rather than a match that is false. parseDate is the
// same check in Go, for literals at load (FuzzRuleDates holds the two
// equal).
const (
	dateYear        = `(167[89]|16[89][0-9]|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])`
	datePattern     = `^` + dateYear + `-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$`
	dateTimePart    = `T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`
	dateTimePattern = `^` + dateYear + `-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])` + dateTimePart
)

var (
	dateRE     = regexp.MustCompile(datePattern)
	dateTimeRE = regexp.MustCompile(dateTimePattern)
)

// parseDate returns the instant a date operand stands for, and false when
// s is not one.
func parseDate(s string) (time.Time, bool) {
	switch {
	case dateTimeRE.MatchString(s):
	case dateRE.MatchString(s):
		s += "T00:00:00Z"
	default:
		return time.Time{}, false
	}
	if !dayOK(s[0:4], s[5:7], s[8:10]) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

var monthDays = map[string]string{
	"01": "31", "02": "28", "03": "31", "04": "30", "05": "31", "06": "30",
	"07": "31", "08": "31", "09": "30", "10": "31", "11": "30", "12": "31",
}

// dayOK reports whether day (two digits) is a day of month in year, as
// the module's day_ok does.
func dayOK(year, month, day string) bool {
	if day <= monthDays[month] {
		return true
	}
	y, _ := strconv.Atoi(year)
	return month == "02" && day == "29" && (y%4 == 0 && y%100 != 0 || y%400 == 0)
}

// regoDates is the part of the module that defines date_ns.
func regoDates(g *regoGen) {
	g.p("")
	g.p("# date_ns is the instant of an RFC 3339 date-time, or of a date at")
	g.p("# midnight UTC, in nanoseconds, and undefined for any other value. The")
	g.p("# form and the day are checked first: time.parse_rfc3339_ns fails on")
	g.p("# anything else.")
	g.p("date_ns(s) := time.parse_rfc3339_ns(s) if {")
	g.p("\tis_string(s)")
	g.p("\tregex.match(`%s`, s)", dateTimePattern)
	g.p("\tday_ok(substring(s, 0, 4), substring(s, 5, 2), substring(s, 8, 2))")
	g.p("} else := time.parse_rfc3339_ns(concat(\"\", [s, \"T00:00:00Z\"])) if {")
	g.p("\tis_string(s)")
	g.p("\tregex.match(`%s`, s)", datePattern)
	g.p("\tday_ok(substring(s, 0, 4), substring(s, 5, 2), substring(s, 8, 2))")
	g.p("}")
	g.p("")
	g.p("month_days := {")
	for _, m := range []string{"01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"} {
		g.p("\t%q: %q,", m, monthDays[m])
	}
	g.p("}")
	g.p("")
	g.p("day_ok(_, month, day) if day <= month_days[month]")
	g.p("")
	g.p("day_ok(year, \"02\", \"29\") if leap_year(to_number(year))")
	g.p("")
	g.p("leap_year(y) if {")
	g.p("\ty %% 4 == 0")
	g.p("\ty %% 100 != 0")
	g.p("}")
	g.p("")
	g.p("leap_year(y) if y %% 400 == 0")
}
