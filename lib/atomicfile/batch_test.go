package atomicfile

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func TestBatch(t *testing.T) {
	b := NewBatch[string]()
	b.limit = 3
	if added, full := b.Add("a", "A"); !added || full {
		t.Fatalf("first Add: added %v full %v", added, full)
	}
	if added, _ := b.Add("a", "A2"); added {
		t.Fatal("a second item under a pending key was queued")
	}
	b.Add("b", "B")
	if _, full := b.Add("c", "C"); !full {
		t.Fatal("a batch at its limit is not full")
	}
	if b.Len() != 3 || b.Limit() != 3 {
		t.Fatalf("Len %d, Limit %d", b.Len(), b.Limit())
	}
	var seen string
	if !b.Pending("a", func(s string) { seen = s }) || seen != "A" {
		t.Fatalf("Pending(a) saw %q", seen)
	}

	// Nothing is named before the sync, naming stops at the first error,
	// and every item taken is dropped.
	var events, dropped []string
	synced := false
	err := b.Flush(func() error { synced = true; events = append(events, "sync"); return nil },
		func(s string) error {
			if !synced {
				t.Error("named before the sync")
			}
			events = append(events, s)
			if len(events) == 3 {
				return errors.New("disk gone")
			}
			return nil
		},
		func(s string) { dropped = append(dropped, s) })
	if err == nil || len(events) != 3 || events[0] != "sync" {
		t.Fatalf("Flush: err %v, events %v", err, events)
	}
	slices.Sort(dropped)
	if !slices.Equal(dropped, []string{"A", "B", "C"}) {
		t.Fatalf("dropped %v", dropped)
	}
	if b.Pending("a", nil) {
		t.Fatal("an item is still pending after Flush")
	}

	// A failed sync names nothing; an empty batch does not sync.
	b.Add("d", "D")
	named := 0
	if err := b.Flush(func() error { return errors.New("EIO") }, func(string) error { named++; return nil }, func(string) {}); err == nil || named != 0 {
		t.Fatalf("failed sync: err %v, named %d", err, named)
	}
	if err := b.Flush(func() error { t.Error("synced an empty batch"); return nil }, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// With several namers every item is named once, after the sync, and an
// error stops the naming and is returned.
func TestBatchNamers(t *testing.T) {
	b := NewBatch[int]()
	b.SetNamers(4)
	for i := range 500 {
		b.Add(string(rune('a'+i%26))+string(rune(i)), i)
	}
	var mu sync.Mutex
	seen := map[int]int{}
	synced := false
	err := b.Flush(func() error { synced = true; return nil }, func(i int) error {
		mu.Lock()
		defer mu.Unlock()
		if !synced {
			t.Error("named before the sync")
		}
		seen[i]++
		return nil
	}, func(int) {})
	if err != nil || len(seen) != 500 {
		t.Fatalf("Flush: err %v, %d of 500 named", err, len(seen))
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("item %d named %d times", i, n)
		}
	}

	for i := range 500 {
		b.Add(string(rune(i)), i)
	}
	var named atomic.Int32
	dropped := 0
	err = b.Flush(func() error { return nil }, func(i int) error {
		if named.Add(1) == 10 {
			return errors.New("disk gone")
		}
		return nil
	}, func(int) { dropped++ })
	if err == nil || named.Load() > 10+4 || dropped != 500 {
		t.Fatalf("failing name: err %v, %d named after it, %d dropped", err, named.Load(), dropped)
	}
}
