package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// serverLogger is nats-server's Logger over a *slog.Logger (nil: silent).
// It also catches the server's fatal errors, which nats-server reports only
// by logging them (a port in use, JetStream failing to start), so that
// [Start] can return them.
type serverLogger struct {
	l     *slog.Logger
	debug bool
	fatal chan error
}

// levelTrace is below slog.LevelDebug: nats-server's protocol trace.
const levelTrace = slog.LevelDebug - 4

func newServerLogger(l *slog.Logger) *serverLogger {
	s := &serverLogger{l: l, fatal: make(chan error, 1)}
	if l != nil {
		s.debug = l.Enabled(context.Background(), slog.LevelDebug)
	}
	return s
}

func (s *serverLogger) log(level slog.Level, format string, v []any) {
	if s.l == nil || !s.l.Enabled(context.Background(), level) {
		return
	}
	s.l.Log(context.Background(), level, fmt.Sprintf(format, v...), slog.String("component", "nats-server"))
}

func (s *serverLogger) Noticef(format string, v ...any) { s.log(slog.LevelInfo, format, v) }
func (s *serverLogger) Warnf(format string, v ...any)   { s.log(slog.LevelWarn, format, v) }
func (s *serverLogger) Errorf(format string, v ...any)  { s.log(slog.LevelError, format, v) }
func (s *serverLogger) Debugf(format string, v ...any)  { s.log(slog.LevelDebug, format, v) }
func (s *serverLogger) Tracef(format string, v ...any)  { s.log(levelTrace, format, v) }

// Fatalf logs at error level and hands the first fatal error to Start;
// unlike nats-server's own loggers it never exits the process.
func (s *serverLogger) Fatalf(format string, v ...any) {
	s.log(slog.LevelError, format, v)
	err := errors.New("broker: nats-server: " + fmt.Sprintf(format, v...))
	select {
	case s.fatal <- err:
	default:
	}
}
