package pull

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// LowSpeed ends a transfer that has stalled, as curl's --speed-limit and
// --speed-time do: a download that moves fewer than Limit bytes per second
// for Time fails. Only time spent waiting for the network counts; a pull
// that is busy writing what it received is not stalled.
type LowSpeed struct {
	Limit int64         // bytes per second; 0 means "no byte at all"
	Time  time.Duration // 0 disables the rule
}

// DefaultLowSpeed is what a pull uses unless told otherwise: a registry
// that serves less than 1 KiB/s for a minute has, in practice, stopped.
var DefaultLowSpeed = LowSpeed{Limit: 1024, Time: time.Minute}

// StallError is the error of a transfer ended by the LowSpeed rule.
type StallError struct {
	What string // "blob sha256:…", "manifest"
	Rule LowSpeed
}

func (e *StallError) Error() string {
	if e.Rule.Limit == 0 {
		return fmt.Sprintf("%s: the transfer stalled: nothing received for %v", e.What, e.Rule.Time)
	}
	return fmt.Sprintf("%s: the transfer stalled: under %d bytes/s for %v", e.What, e.Rule.Limit, e.Rule.Time)
}

// Option tunes Open.
type Option func(*Source)

// WithLowSpeed sets the stall rule of every request of the source.
func WithLowSpeed(rule LowSpeed) Option { return func(s *Source) { s.lowSpeed = rule } }

// watchdog measures one transfer and cancels its context when the rule
// says it has stalled. The caller marks the time it waits for the network
// with wait/got.
type watchdog struct {
	rule   LowSpeed
	what   string
	cancel context.CancelFunc
	stop   chan struct{}

	mu      sync.Mutex
	bytes   int64
	waited  time.Duration // in finished waits
	since   time.Time     // start of the wait in progress; zero if none
	samples []sample
	stalled *StallError
}

type sample struct {
	waited time.Duration
	bytes  int64
}

// watch starts a watchdog for a transfer under ctx; the returned context
// is cancelled when it stalls. A zero rule watches nothing.
func watch(ctx context.Context, rule LowSpeed, what string) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watchdog{rule: rule, what: what, cancel: cancel, stop: make(chan struct{})}
	if rule.Time > 0 {
		go w.run()
	}
	return ctx, w
}

func (w *watchdog) run() {
	every := min(max(w.rule.Time/8, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			if w.check(now) {
				w.cancel()
				return
			}
		}
	}
}

// check records a sample and reports whether, over the last rule.Time of
// waiting, fewer bytes arrived than the rule asks for.
func (w *watchdog) check(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	waited := w.waited
	if !w.since.IsZero() {
		waited += now.Sub(w.since)
	}
	w.samples = append(w.samples, sample{waited, w.bytes})
	// The newest sample at least rule.Time of waiting old is the base.
	base := -1
	for i, s := range w.samples {
		if s.waited <= waited-w.rule.Time {
			base = i
		}
	}
	if base < 0 {
		return false
	}
	w.samples = w.samples[base:]
	want := max(int64(w.rule.Time.Seconds()*float64(w.rule.Limit)), 1)
	if w.bytes-w.samples[0].bytes >= want {
		return false
	}
	w.stalled = &StallError{What: w.what, Rule: w.rule}
	return true
}

// wait marks the start of a wait for the network.
func (w *watchdog) wait() {
	w.mu.Lock()
	w.since = time.Now()
	w.mu.Unlock()
}

// got ends a wait that brought n bytes. It returns the stall error if the
// watchdog fired, which replaces whatever error the cancelled wait gave.
func (w *watchdog) got(n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.since.IsZero() {
		w.waited += time.Since(w.since)
		w.since = time.Time{}
	}
	w.bytes += int64(n)
	if w.stalled != nil {
		return w.stalled
	}
	return nil
}

// done stops the watchdog and releases its context.
func (w *watchdog) done() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.cancel()
}

// watchedBody is a blob body read under a watchdog.
type watchedBody struct {
	r  io.ReadCloser
	wd *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.wd.wait()
	n, err := b.r.Read(p)
	if serr := b.wd.got(n); serr != nil {
		return n, serr
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.wd.done()
	return b.r.Close()
}
