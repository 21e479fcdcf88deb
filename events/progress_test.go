package events

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestProgressResume: a consumer made again starts after the last event
// finished when that is recent, and a minute back when it is older or not
// known, so that it never replays what the tasks' de-duplication window
// cannot absorb.
func TestProgressResume(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	base := jetstream.ConsumerConfig{Durable: "tr_x", DeliverPolicy: jetstream.DeliverNewPolicy}
	for _, tc := range []struct {
		name     string
		p        *progress
		wantSeq  uint64
		wantTime time.Time
	}{
		{"recent", &progress{seq: 41, at: now.Add(-10 * time.Second)}, 42, time.Time{}},
		{"old", &progress{seq: 41, at: now.Add(-time.Hour)}, 0, now.Add(-maxReplay)},
		{"not known", &progress{seq: 41}, 0, now.Add(-maxReplay)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.p.resume(base, now)
			if tc.wantSeq != 0 {
				if cfg.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || cfg.OptStartSeq != tc.wantSeq || cfg.OptStartTime != nil {
					t.Errorf("got policy %v seq %d time %v; want from sequence %d", cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime, tc.wantSeq)
				}
				return
			}
			if cfg.DeliverPolicy != jetstream.DeliverByStartTimePolicy || cfg.OptStartTime == nil || !cfg.OptStartTime.Equal(tc.wantTime) || cfg.OptStartSeq != 0 {
				t.Errorf("got policy %v seq %d time %v; want from time %v", cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime, tc.wantTime)
			}
		})
	}
	var p progress
	p.finished(5, now)
	p.finished(3, now.Add(time.Second)) // an older sequence never moves it back
	if p.seq != 5 || !p.at.Equal(now) {
		t.Errorf("after 5 then 3: seq %d at %v; want 5 at %v", p.seq, p.at, now)
	}
}
