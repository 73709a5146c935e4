package connectplugin

/*
#include <stdlib.h>
#include "connectplugin.h"
*/
import "C"

import (
	"runtime"
	"strings"
	"sync"
)

// MetadataEntry is one (key, value) pair of HTTP headers or trailers. Keys are lowercase ASCII as
// received from the library. Keys ending in "-bin" carry arbitrary bytes; other values are
// printable ASCII.
type MetadataEntry struct {
	Key   string
	Value []byte
}

// Metadata is an ordered list of entries; a key may repeat. It is a Go copy, safe to keep and share.
type Metadata []MetadataEntry

// Lookup returns the first value for key (compared case-insensitively) and whether it was present.
func (m Metadata) Lookup(key string) ([]byte, bool) {
	for _, e := range m {
		if strings.EqualFold(e.Key, key) {
			return e.Value, true
		}
	}
	return nil, false
}

// Get returns the first value for key as a string, or "" if absent.
func (m Metadata) Get(key string) string {
	v, _ := m.Lookup(key)
	return string(v)
}

// Values returns every value for key, in order.
func (m Metadata) Values(key string) [][]byte {
	var out [][]byte
	for _, e := range m {
		if strings.EqualFold(e.Key, key) {
			out = append(out, e.Value)
		}
	}
	return out
}

// copyMetadata copies a borrowed C list into Go memory. NULL gives nil.
func copyMetadata(md *C.connectplugin_metadata) Metadata {
	n := int(C.connectplugin_metadata_count(md))
	if n == 0 {
		return nil
	}
	out := make(Metadata, 0, n)
	for i := 0; i < n; i++ {
		var key *C.char
		var val *C.uint8_t
		var vlen C.size_t
		if C.connectplugin_metadata_get(md, C.size_t(i), &key, &val, &vlen) != C.CONNECTPLUGIN_OK {
			continue
		}
		out = append(out, MetadataEntry{Key: C.GoString(key), Value: goBytes(val, vlen)})
	}
	return out
}

// MetadataList is a library-owned metadata list (connectplugin_metadata). It applies the library's
// rules: keys are validated and lowercased, non "-bin" values must be printable ASCII. Handlers use it
// to collect response headers and trailers; it can also validate entries up front.
//
// A MetadataList is safe for concurrent use. Close frees it (also done by a finalizer).
type MetadataList struct {
	mu   sync.Mutex
	_ptr *C.connectplugin_metadata
}

// NewMetadataList creates an empty list.
func NewMetadataList() (*MetadataList, error) {
	p := C.connectplugin_metadata_new()
	if p == nil {
		return nil, newLocalError(StatusResource, CodeResourceExhausted, "connectplugin_metadata_new: out of memory")
	}
	l := &MetadataList{_ptr: p}
	runtime.SetFinalizer(l, (*MetadataList).Close)
	return l, nil
}

// Add appends (key, value) after validating them.
func (l *MetadataList) Add(key string, value []byte) error {
	ckey, err := cString("metadata key", key)
	if err != nil {
		return err
	}
	defer freeCString(ckey)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l._ptr == nil {
		return errClosed("metadata list")
	}
	v, n := cBytes(value)
	var cerr *C.connectplugin_error
	status := C.connectplugin_metadata_add(l._ptr, ckey, v, n, &cerr)
	runtime.KeepAlive(value)
	runtime.KeepAlive(l)
	return check(status, &cerr)
}

// Len returns the number of entries (0 after Close).
func (l *MetadataList) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := int(C.connectplugin_metadata_count(l._ptr))
	runtime.KeepAlive(l)
	return n
}

// Lookup returns a copy of the first value for key (case-insensitive) and whether it was present.
func (l *MetadataList) Lookup(key string) ([]byte, bool) {
	if strings.IndexByte(key, 0) >= 0 {
		return nil, false
	}
	ckey := C.CString(key)
	defer freeCString(ckey)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l._ptr == nil {
		return nil, false
	}
	var n C.size_t
	v := C.connectplugin_metadata_lookup(l._ptr, ckey, &n)
	runtime.KeepAlive(l)
	if v == nil {
		return nil, false
	}
	return goBytes(v, n), true
}

// Entries returns a Go copy of the list (keys lowercased by the library).
func (l *MetadataList) Entries() Metadata {
	l.mu.Lock()
	defer l.mu.Unlock()
	md := copyMetadata(l._ptr)
	runtime.KeepAlive(l)
	return md
}

// Close frees the list. It is idempotent.
func (l *MetadataList) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l._ptr == nil {
		return
	}
	runtime.SetFinalizer(l, nil)
	C.connectplugin_metadata_free(l._ptr)
	l._ptr = nil
}
