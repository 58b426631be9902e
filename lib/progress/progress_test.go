package progress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestHumanBytesAndBar(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 10 << 20: "10.0 MiB", 3 << 30: "3.0 GiB", 1 << 62: "4.0 EiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for _, c := range []struct {
		done, total int64
		want        string
	}{
		{0, 100, "[          ]"},
		{50, 100, "[#####     ]"},
		{100, 100, "[##########]"},
		{150, 100, "[##########]"},
		{5, 0, "[##########]"}, // unknown total
	} {
		if got := Bar(c.done, c.total, 10); got != c.want {
			t.Errorf("Bar(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}

func TestLayers(t *testing.T) {
	l := NewLayers()
	l.Read(0, 10)
	l.Read(1, 5)
	l.Read(0, 20)
	if l.Bytes() != 25 || l.Of(0) != 20 || l.Finished() != 0 {
		t.Errorf("after reads: %d %d %d", l.Bytes(), l.Of(0), l.Finished())
	}
	l.Finish(1, 7)
	l.Finish(2, 0) // present: read nothing
	if l.Bytes() != 27 || l.Of(1) != 7 || l.Finished() != 2 {
		t.Errorf("after finishing: %d %d %d", l.Bytes(), l.Of(1), l.Finished())
	}
}

// Human lines: on a non-terminal only required events and log lines are
// printed, one per line; nothing at all when quiet.
func TestHumanLines(t *testing.T) {
	var buf bytes.Buffer
	r, err := New(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.Progress(Bytes{Task: "t"}, false, "a bar that is redrawn")
	r.Progress(Bytes{Task: "t"}, true, "layer 1/2 done")
	r.Logf("summary %d", 7)
	r.Progress(Bytes{Task: "t"}, true, "")
	r.Done()
	if got := buf.String(); got != "layer 1/2 done\nsummary 7\n" {
		t.Errorf("human output %q", got)
	}
	quiet, err := New(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	quiet.Progress(Bytes{}, true, "line")
	quiet.Logf("nothing")
	quiet.Done()
}

// --progress-fd: bootc's Start line, then ProgressBytes lines; events that
// are not required are rate limited, required ones always go out.
func TestJSONLines(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	r, err := New(nil, int(pw.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	r.Progress(Bytes{Task: "pulling", Bytes: 0, BytesTotal: 10}, false, "x") // right after Start: dropped
	time.Sleep(refresh + 50*time.Millisecond)
	r.Progress(Bytes{Task: "pulling", Bytes: 1, BytesTotal: 10}, false, "x")
	r.Progress(Bytes{Task: "pulling", Bytes: 2, BytesTotal: 10}, false, "x") // within 200ms: dropped
	r.Progress(Bytes{Task: "pulling", Bytes: 10, BytesTotal: 10, Steps: 1, Subtasks: []SubTask{{Subtask: "layer", ID: "l1", Bytes: 10}}}, true, "x")
	pw.Close()

	var lines []map[string]any
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want Start and two ProgressBytes: %v", len(lines), lines)
	}
	if lines[0]["type"] != "Start" || lines[0]["version"] != APIVersion {
		t.Errorf("first line %v", lines[0])
	}
	if lines[1]["type"] != "ProgressBytes" || lines[1]["bytes"] != 1.0 || lines[1]["subtasks"] == nil {
		t.Errorf("second line %v (subtasks must be [], not null)", lines[1])
	}
	if lines[2]["bytes"] != 10.0 || lines[2]["steps"] != 1.0 || len(lines[2]["subtasks"].([]any)) != 1 {
		t.Errorf("third line %v", lines[2])
	}
}

// A closed progress descriptor stops the JSON lines, not the work.
func TestJSONFailureIsNotFatal(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	var buf bytes.Buffer
	r, err := New(&buf, int(pw.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	pr.Close() // the reader went away: writes fail with EPIPE
	r.Progress(Bytes{}, true, "still printed")
	r.Progress(Bytes{}, true, "and again")
	if buf.String() != "still printed\nand again\n" {
		t.Errorf("human output %q", buf.String())
	}
}

func TestBadDescriptor(t *testing.T) {
	for _, fd := range []int{1, 2, 987} {
		if _, err := New(nil, fd); err == nil || strings.Contains(err.Error(), "--") {
			t.Errorf("fd %d: %v (want an error that names no flag)", fd, err)
		}
	}
}
