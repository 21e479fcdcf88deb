package dashboard

import (
	_ "embed"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"
)

//go:embed page.html
var pageHTML string

// pageData is what page.html renders.
type pageData struct {
	Title     string
	Nonce     string
	RefreshMs int64
	Snap      *Snapshot
	Now       time.Time
	Replayed  string // the task just replayed, to say so
}

var pageTemplate = template.Must(template.New("dashboard").Funcs(template.FuncMap{
	"rfc3339":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock":     func(t time.Time) string { return t.UTC().Format("15:04:05 UTC") },
	"since":     since,
	"until":     until,
	"latency":   latency,
	"instances": instances,
	"versions":  versions,
	"plural": func(n any, one, many string) string {
		if fmt.Sprint(n) == "1" {
			return one
		}
		return many
	},
}).Parse(pageHTML))

// since says how long ago t was, to the largest two units.
func since(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", max(0, int(d.Seconds())))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds ago", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// until says how long until t, to the largest two units; "now" once due.
func until(t, now time.Time) string {
	d := t.Sub(now)
	if d < time.Second {
		return "now"
	}
	s := since(now, t) // the same span, from t's side
	return "in " + strings.TrimSuffix(s, " ago")
}

// latency formats a function's average latency, "–" when unknown.
func latency(f Function) string {
	if !f.LatencyKnown {
		return "–"
	}
	d := f.AvgLatency
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func instances(s *Snapshot) int {
	n := 0
	for _, svc := range s.Services {
		n += len(svc.Instances)
	}
	return n
}

// versions lists a service's versions, "v1.2.0, v1.3.0".
func versions(s Service) string {
	var vs []string
	for _, in := range s.Instances {
		v := in.Version
		if v == "" {
			v = "no version"
		} else {
			v = "v" + strings.TrimPrefix(v, "v")
		}
		if !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return strings.Join(vs, ", ")
}
