package clone

import (
	"context"
	"errors"
	"math/rand"
	"strconv"
	"testing"
	"time"

	"github.com/cfs-project/cfs/lib/stream"
)

// Entries come out in the order they went in, whatever order the workers
// finish them in.
func TestOrderedKeepsOrder(t *testing.T) {
	var got []string
	o := newOrdered(context.Background(), 4, 8, func(j *job) error {
		got = append(got, j.entry.Path)
		return nil
	})
	for i := 0; i < 200; i++ {
		j := &job{entry: &stream.Entry{Path: strconv.Itoa(i)}}
		if i%3 != 0 {
			d := time.Duration(rand.Intn(200)) * time.Microsecond
			j.run = func() error { time.Sleep(d); return nil }
		}
		if !o.submit(j) {
			t.Fatal("submit refused")
		}
	}
	if err := o.wait(); err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		if p != strconv.Itoa(i) {
			t.Fatalf("entry %d came out as %s", i, p)
		}
	}
	if len(got) != 200 {
		t.Fatalf("%d entries", len(got))
	}
}

// The first failing job stops the output there and is the error returned.
func TestOrderedStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	var emitted int
	o := newOrdered(context.Background(), 2, 4, func(*job) error { emitted++; return nil })
	submitted := 0
	for i := 0; i < 1000; i++ {
		j := &job{entry: &stream.Entry{}}
		if i == 10 {
			j.run = func() error { return boom }
		}
		if !o.submit(j) {
			break
		}
		submitted++
	}
	if err := o.wait(); !errors.Is(err, boom) {
		t.Fatalf("wait = %v", err)
	}
	if emitted != 10 {
		t.Errorf("%d entries emitted before the failing one, want 10", emitted)
	}
	if submitted == 1000 {
		t.Error("the pipeline kept accepting work after failing")
	}
}

func TestOrderedCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	o := newOrdered(ctx, 1, 1, func(*job) error { return nil })
	cancel()
	for i := 0; i < 10 && o.submit(&job{entry: &stream.Entry{}}); i++ {
	}
	if err := o.wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("wait = %v, want context.Canceled", err)
	}
}
