// Package progress reports long work three ways at once: a one-line
// display when stderr is a terminal, plain lines when it is not, and
// bootc's JSON Lines progress protocol on --progress-fd N.
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// APIVersion is the version bootc announces in its Start message.
const APIVersion = "0.1.0"

// refresh is bootc's rate limit for lossy updates (REFRESH_HZ = 5).
const refresh = 200 * time.Millisecond

// SubTask is one unit inside a task, e.g. a layer.
type SubTask struct {
	Subtask     string `json:"subtask"`
	Description string `json:"description"`
	ID          string `json:"id"`
	BytesCached int64  `json:"bytesCached"`
	Bytes       int64  `json:"bytes"`
	BytesTotal  int64  `json:"bytesTotal"`
}

// Bytes is bootc's ProgressBytes event.
type Bytes struct {
	Task        string    `json:"task"`
	Description string    `json:"description"`
	ID          string    `json:"id"`
	BytesCached int64     `json:"bytesCached"`
	Bytes       int64     `json:"bytes"`
	BytesTotal  int64     `json:"bytesTotal"`
	StepsCached int64     `json:"stepsCached"`
	Steps       int64     `json:"steps"`
	StepsTotal  int64     `json:"stepsTotal"`
	Subtasks    []SubTask `json:"subtasks"`
}

// Reporter sends progress where the user asked for it. Its methods are
// safe for concurrent use; a failing progress fd disables JSON output and
// the work goes on, as in bootc.
type Reporter struct {
	mu       sync.Mutex
	human    io.Writer // nil when quiet
	tty      bool
	jsonOut  *os.File
	lastJSON time.Time
	lastLine time.Time
	drawn    bool
}

// New returns a Reporter writing human output to human (nil: none; a
// terminal gets a redrawn line, anything else plain lines), and JSON lines
// to file descriptor fd when fd is not 0.
func New(human io.Writer, fd int) (*Reporter, error) {
	r := &Reporter{human: human}
	if f, ok := human.(*os.File); ok {
		r.tty = term.IsTerminal(int(f.Fd()))
	}
	if fd != 0 {
		if fd < 3 {
			return nil, fmt.Errorf("file descriptor %d: must be 3 or more (0-2 are stdin, stdout and stderr)", fd)
		}
		f := os.NewFile(uintptr(fd), fmt.Sprintf("progress-fd-%d", fd))
		if _, err := f.Stat(); err != nil {
			return nil, fmt.Errorf("file descriptor %d: %w", fd, err)
		}
		r.jsonOut = f
		r.sendJSON(map[string]string{"type": "Start", "version": APIVersion}, true)
	}
	return r, nil
}

func (r *Reporter) sendJSON(v any, required bool) {
	if r.jsonOut == nil {
		return
	}
	now := time.Now()
	if !required && now.Sub(r.lastJSON) < refresh {
		return
	}
	line, err := json.Marshal(v)
	if err == nil {
		_, err = r.jsonOut.Write(append(line, '\n'))
	}
	if err != nil {
		r.jsonOut = nil
		return
	}
	r.lastJSON = now
}

// Progress reports a ProgressBytes event. required events (a subtask
// finishing) always go out; others are rate limited.
func (r *Reporter) Progress(ev Bytes, required bool, line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Subtasks == nil {
		ev.Subtasks = []SubTask{}
	}
	r.sendJSON(struct {
		Type string `json:"type"`
		Bytes
	}{"ProgressBytes", ev}, required)
	if r.human == nil || line == "" {
		return
	}
	if r.tty {
		if !required && time.Since(r.lastLine) < refresh {
			return
		}
		fmt.Fprintf(r.human, "\r\033[K%s", line)
		r.drawn = true
		r.lastLine = time.Now()
		return
	}
	if required {
		fmt.Fprintln(r.human, line)
	}
}

// Logf prints a message line for humans (not to the JSON fd).
func (r *Reporter) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.human == nil {
		return
	}
	if r.drawn {
		fmt.Fprint(r.human, "\r\033[K")
		r.drawn = false
	}
	fmt.Fprintf(r.human, format+"\n", args...)
}

// Done clears the terminal line.
func (r *Reporter) Done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drawn {
		fmt.Fprint(r.human, "\r\033[K")
		r.drawn = false
	}
}
