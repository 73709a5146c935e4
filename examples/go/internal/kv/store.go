package kv

import (
	"sort"
	"strings"
	"sync"
)

// Event is one change seen by a watcher: a stored value, or a deletion.
type Event struct {
	Key     string
	Value   []byte
	Deleted bool
}

// Store is the in-memory map of the KV service, shared by every call and safe for concurrent use.
// Every mutation is atomic with respect to List snapshots and watcher registrations.
type Store struct {
	mu       sync.Mutex
	m        map[string][]byte
	watchers map[*Watcher]struct{}
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{m: map[string][]byte{}, watchers: map[*Watcher]struct{}{}}
}

// Put stores a copy of value under key and notifies the watchers whose prefixes match.
func (s *Store) Put(key string, value []byte) {
	v := append([]byte{}, value...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = v
	s.notify(Event{Key: key, Value: v})
}

// Get returns the value of key and whether it is present.
func (s *Store) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}

// Delete removes key and reports whether it was present; a present key notifies the watchers.
func (s *Store) Delete(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		return false
	}
	delete(s.m, key)
	s.notify(Event{Key: key, Deleted: true})
	return true
}

// List returns every stored key that starts with prefix, with its value, in ascending byte order
// of the key, from one consistent snapshot.
func (s *Store) List(prefix string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.matching(prefix)
}

func (s *Store) matching(prefix string) []Event {
	var out []Event
	for k, v := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, Event{Key: k, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key }) // Go compares strings bytewise
	return out
}

// notify queues ev on every watcher with a matching prefix (s.mu held).
func (s *Store) notify(ev Event) {
	for w := range s.watchers {
		for _, p := range w.prefixes {
			if strings.HasPrefix(ev.Key, p) {
				w.push(ev)
				break // one event even if several prefixes match
			}
		}
	}
}

// Watch registers a watcher with no prefix yet. Close it when the call ends.
func (s *Store) Watch() *Watcher {
	w := &Watcher{store: s}
	w.cond = sync.NewCond(&w.mu)
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	return w
}

// Watcher is the event queue of one Watch call: replays and live changes, in the order the store
// applied them, then an end marker.
type Watcher struct {
	store    *Store
	prefixes []string // guarded by store.mu

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []Event
	ended  bool
	endErr error
}

// AddPrefix watches prefix: it queues a replay of every stored key that starts with it (sorted),
// atomically with registering the prefix, so no change is lost or doubled.
func (w *Watcher) AddPrefix(prefix string) {
	w.store.mu.Lock()
	defer w.store.mu.Unlock()
	for _, ev := range w.store.matching(prefix) {
		w.push(ev)
	}
	w.prefixes = append(w.prefixes, prefix)
}

func (w *Watcher) push(ev Event) {
	w.mu.Lock()
	if !w.ended {
		w.queue = append(w.queue, ev)
		w.cond.Signal()
	}
	w.mu.Unlock()
}

// End queues the end of the call after the events already queued: err is nil for a normal end
// (the client half-closed). Later events and ends are ignored.
func (w *Watcher) End(err error) {
	w.mu.Lock()
	if !w.ended {
		w.ended, w.endErr = true, err
		w.cond.Signal()
	}
	w.mu.Unlock()
}

// Next blocks until the next event (ok = true) or the end (ok = false, with End's error).
func (w *Watcher) Next() (ev Event, ok bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) == 0 && !w.ended {
		w.cond.Wait()
	}
	if len(w.queue) > 0 {
		ev = w.queue[0]
		w.queue[0] = Event{}
		w.queue = w.queue[1:]
		return ev, true, nil
	}
	return Event{}, false, w.endErr
}

// Close unregisters the watcher and ends it.
func (w *Watcher) Close() {
	w.store.mu.Lock()
	delete(w.store.watchers, w)
	w.store.mu.Unlock()
	w.End(nil)
}
