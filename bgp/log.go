package bgp

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
)

// gobgpHandler adapts GoBGP's log records to ours: keys lowercase (GoBGP
// writes "Topic", "Key"), and GoBGP's routine Info chatter (every FSM step)
// demoted to Debug so that it does not drown the daemon's own log.
type gobgpHandler struct {
	next slog.Handler
	// stopped is set once the speaker has stopped BGP: GoBGP's Stop, which
	// ends what StopBgp leaves running, then reports that there was no BGP
	// left to stop, and that message is dropped.
	stopped *atomic.Bool
}

// msgStopFailed is what GoBGP's Stop logs when StopBgp ran before it.
const msgStopFailed = "failed to stop BGP server"

func (h gobgpHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, demote(l))
}

func (h gobgpHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == msgStopFailed && h.stopped != nil && h.stopped.Load() {
		return nil
	}
	out := slog.NewRecord(r.Time, demote(r.Level), r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(lowerAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h gobgpHandler) WithAttrs(as []slog.Attr) slog.Handler {
	low := make([]slog.Attr, len(as))
	for i, a := range as {
		low[i] = lowerAttr(a)
	}
	return gobgpHandler{next: h.next.WithAttrs(low), stopped: h.stopped}
}

func (h gobgpHandler) WithGroup(name string) slog.Handler {
	return gobgpHandler{next: h.next.WithGroup(strings.ToLower(name)), stopped: h.stopped}
}

func demote(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

func lowerAttr(a slog.Attr) slog.Attr {
	a.Key = strings.ToLower(a.Key)
	if a.Value.Kind() == slog.KindGroup {
		g := a.Value.Group()
		low := make([]any, len(g))
		for i, x := range g {
			low[i] = lowerAttr(x)
		}
		return slog.Group(a.Key, low...)
	}
	return a
}

// gobgpLogger returns the logger handed to GoBGP: ours, tagged, adapted.
// stopped, when not nil, is the speaker's flag that BGP has stopped.
func gobgpLogger(log *slog.Logger, stopped *atomic.Bool) *slog.Logger {
	return slog.New(gobgpHandler{next: log.With("subsystem", "gobgp").Handler(), stopped: stopped})
}
