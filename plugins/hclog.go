package plugins

import (
	"context"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// slogAdapter lets go-plugin log, and a plugin's stderr lines reach, the
// proxy's slog logger. Methods it does not override come from hclog's
// null logger.
type slogAdapter struct {
	hclog.Logger // null: the rest of the interface
	log          *slog.Logger
	// stderrName is the name go-plugin gives the logger of the plugin's
	// stderr (the executable's base name); lines there without a level
	// are the plugin's own, logged at Info rather than Debug.
	stderrName string
	stderr     bool
}

func newSlogAdapter(log *slog.Logger, stderrName string) hclog.Logger {
	return &slogAdapter{Logger: hclog.NewNullLogger(), log: log, stderrName: stderrName}
}

func (a *slogAdapter) emit(level slog.Level, msg string, args []any) {
	if a.stderr && level < slog.LevelInfo {
		level = slog.LevelInfo
	}
	if !a.log.Enabled(context.Background(), level) {
		return
	}
	a.log.Log(context.Background(), level, msg, args...)
}

// Log implements hclog.Logger.
func (a *slogAdapter) Log(level hclog.Level, msg string, args ...any) {
	a.emit(slogLevel(level), msg, args)
}

// Trace implements hclog.Logger.
func (a *slogAdapter) Trace(msg string, args ...any) { a.emit(slog.LevelDebug-4, msg, args) }

// Debug implements hclog.Logger.
func (a *slogAdapter) Debug(msg string, args ...any) { a.emit(slog.LevelDebug, msg, args) }

// Info implements hclog.Logger.
func (a *slogAdapter) Info(msg string, args ...any) { a.emit(slog.LevelInfo, msg, args) }

// Warn implements hclog.Logger.
func (a *slogAdapter) Warn(msg string, args ...any) { a.emit(slog.LevelWarn, msg, args) }

// Error implements hclog.Logger.
func (a *slogAdapter) Error(msg string, args ...any) { a.emit(slog.LevelError, msg, args) }

// IsTrace implements hclog.Logger.
func (a *slogAdapter) IsTrace() bool { return false }

// IsDebug implements hclog.Logger.
func (a *slogAdapter) IsDebug() bool { return a.log.Enabled(context.Background(), slog.LevelDebug) }

// IsInfo implements hclog.Logger.
func (a *slogAdapter) IsInfo() bool { return a.log.Enabled(context.Background(), slog.LevelInfo) }

// IsWarn implements hclog.Logger.
func (a *slogAdapter) IsWarn() bool { return a.log.Enabled(context.Background(), slog.LevelWarn) }

// IsError implements hclog.Logger.
func (a *slogAdapter) IsError() bool { return a.log.Enabled(context.Background(), slog.LevelError) }

// GetLevel implements hclog.Logger: go-plugin skips reading a plugin's
// log lines below it.
func (a *slogAdapter) GetLevel() hclog.Level {
	if a.IsDebug() {
		return hclog.Debug
	}
	return hclog.Info
}

// With implements hclog.Logger.
func (a *slogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.log = a.log.With(args...)
	return &b
}

// Named implements hclog.Logger.
func (a *slogAdapter) Named(name string) hclog.Logger {
	b := *a
	b.stderr = name == a.stderrName
	return &b
}

// ResetNamed implements hclog.Logger.
func (a *slogAdapter) ResetNamed(name string) hclog.Logger { return a.Named(name) }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}
