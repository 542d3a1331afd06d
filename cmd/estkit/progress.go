package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progress renders a library's progress: a bar redrawn in place when stderr
// is a terminal, a plain log line every interval otherwise, nothing with
// --quiet.
type progress struct {
	w        io.Writer
	tty      bool
	log      *slog.Logger
	quiet    bool
	start    time.Time
	last     time.Time
	interval time.Duration
	drawn    bool
	phase    string
	complete bool // the phase's 100% has been shown
}

func newProgress(g *globals) *progress {
	tty := false
	if f, ok := g.stderr.(*os.File); ok && !g.json {
		tty = term.IsTerminal(int(f.Fd()))
	}
	now := time.Now()
	p := &progress{w: g.stderr, tty: tty, log: g.log, quiet: g.quiet, start: now, last: now, interval: 10 * time.Second}
	if tty {
		p.interval = 200 * time.Millisecond
	}
	return p
}

// update shows done of total bytes and a count of items (none when items
// is negative).
func (p *progress) update(phase string, done, total, items int64, unit string) {
	if p.quiet {
		return
	}
	now := time.Now()
	if phase != p.phase {
		p.phase, p.start, p.last, p.complete = phase, now, now, false
		p.finish()
	}
	final := done >= total && p.tty && !p.complete
	if now.Sub(p.last) < p.interval && !final {
		return // a plain log gets a line per interval, so short work logs none
	}
	p.complete = p.complete || done >= total
	p.last = now
	el := now.Sub(p.start).Seconds()
	if el <= 0 {
		return
	}
	rate := float64(done) / el
	eta := "?"
	if rate > 0 && total >= done {
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	frac := 0.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	if !p.tty {
		attrs := []any{"done", fmt.Sprintf("%.1f%%", 100*frac), "MB/s", fmt.Sprintf("%.1f", rate/1e6), "eta", eta}
		if items >= 0 {
			attrs = append(attrs, unit, items, unit+"/s", fmt.Sprintf("%.0f", float64(items)/el))
		}
		p.log.Info(phase, attrs...)
		return
	}
	const width = 30
	n := min(int(frac*width), width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	counts := ""
	if items >= 0 {
		counts = fmt.Sprintf(" %9.0f %s/s", float64(items)/el, unit)
	}
	fmt.Fprintf(p.w, "\r%-7s [%s] %5.1f%% %8.1f MB/s%s  ETA %-8s", phase, bar, 100*frac, rate/1e6, counts, eta)
	p.drawn = true
}

// logWriter returns a writer for log lines that first clears a bar drawn
// on the terminal; the next update redraws it below.
func (p *progress) logWriter() io.Writer { return clearingWriter{p} }

type clearingWriter struct{ p *progress }

func (c clearingWriter) Write(b []byte) (int, error) {
	if c.p.drawn {
		fmt.Fprint(c.p.w, "\r\033[K")
		c.p.drawn = false
	}
	return c.p.w.Write(b)
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
