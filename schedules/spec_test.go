package schedules

import (
	"errors"
	"testing"
	"time"
)

func TestSpecErrorsNameTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ spec, tz, field string }{
		{"@every 500ms", "", "spec"},
		{"@every 1.5s", "", "spec"},
		{"@every soon", "", "spec"},
		{"@every 5s", "Europe/Paris", "time_zone"},
		{"0 0 * * *", "", "spec"},
		{"61 0 * * * *", "", "spec.seconds"},
		{"0 60 * * * *", "", "spec.minutes"},
		{"0 0 24 * * *", "", "spec.hours"},
		{"0 0 0 32 * *", "", "spec.day_of_month"},
		{"0 0 0 * 13 *", "", "spec.month"},
		{"0 0 0 * * 7", "", "spec.day_of_week"},
		{"0 0 5-2 * * *", "", "spec.hours"},
		{"*/0 * * * * *", "", "spec.seconds"},
		{"0 0 0 * * *", "Mars/Olympus", "time_zone"},
		{"@fortnightly", "", "spec"},
	} {
		_, err := parseSpec(tc.spec, tc.tz)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("parseSpec(%q, %q) = %v; want an error naming %s", tc.spec, tc.tz, err, tc.field)
		}
	}
	for _, s := range []string{"@every 1s", "@every 90m", "@hourly", "@daily", "0 */5 * * * *", "0 0 9 * * mon-fri", "0 0 0 1 jan,jul *", "30 15 10 ? * *"} {
		if _, err := parseSpec(s, ""); err != nil {
			t.Errorf("parseSpec(%q): %v; want valid", s, err)
		}
	}
}

// TestCronAcrossDST checks next fire times around daylight-saving changes
// against Go's time package, without waiting.
func TestCronAcrossDST(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, ny) }
	daily := func(h, m int) *spec {
		s, err := parseSpec("0 "+itoa(m)+" "+itoa(h)+" * * *", "America/New_York")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Spring forward, 2026-03-08: 02:00 EST becomes 03:00 EDT.
	s := daily(2, 30)
	got := s.next(at(2026, 3, 7, 12, 0))
	if want := at(2026, 3, 9, 2, 30); !got.Equal(want) {
		t.Errorf("02:30 daily after Mar 7 noon: %v; want %v (02:30 does not exist on Mar 8)", got, want)
	}
	s = daily(3, 30)
	got = s.next(at(2026, 3, 7, 12, 0))
	if want := at(2026, 3, 8, 3, 30); !got.Equal(want) || got.Sub(s.next(at(2026, 3, 7, 0, 0))) != 23*time.Hour {
		t.Errorf("03:30 daily: %v; want %v, 23 hours after the day before's", got, want)
	}
	// Fall back, 2026-11-01: 01:00–02:00 happens twice.
	s = daily(1, 30)
	first := s.next(at(2026, 10, 31, 12, 0))
	if first.Hour() != 1 || first.Minute() != 30 || first.Day() != 1 {
		t.Fatalf("01:30 daily: %v; want Nov 1 01:30", first)
	}
	second := s.next(first)
	if want := at(2026, 11, 2, 1, 30); !second.Equal(want) {
		t.Errorf("after %v: %v; want %v (the repeated 01:30 fires once)", first, second, want)
	}
	if d := second.Sub(first); d != 24*time.Hour && d != 25*time.Hour {
		t.Errorf("between the two fires: %v; want 24h or 25h", d)
	}
	// Every 15 minutes through the fall-back night: strictly increasing,
	// each on a quarter hour of the wall clock.
	q, _ := parseSpec("0 */15 * * * *", "America/New_York")
	prev := at(2026, 10, 31, 23, 50)
	for range 20 {
		n := q.next(prev)
		if !n.After(prev) || n.Minute()%15 != 0 || n.Second() != 0 {
			t.Fatalf("next after %v: %v", prev, n)
		}
		prev = n
	}
	// Across a year boundary and a leap day, in UTC.
	leap, _ := parseSpec("0 0 12 29 2 *", "")
	if got, want := leap.next(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)), time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Feb 29 noon: %v; want %v", got, want)
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return string(rune('0'+n/10)) + string(rune('0'+n%10))
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"@every 1s", "0 */5 * * * *", "0 0 9 * * mon-fri", "1-2/3,4 * * * * *", "@hourly"} {
		f.Add(s, "")
	}
	f.Add("0 0 0 * * *", "Europe/Paris")
	f.Fuzz(func(t *testing.T, s, tz string) {
		sp, err := parseSpec(s, tz)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("parseSpec(%q, %q): %v; want a *FieldError", s, tz, err)
			}
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if n := sp.next(from); !n.IsZero() && !n.After(from) {
			t.Fatalf("next(%v) = %v; want later", from, n)
		}
	})
}
