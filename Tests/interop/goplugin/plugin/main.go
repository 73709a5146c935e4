// Command goplugin-kv-plugin is an unmodified HashiCorp go-plugin 1.0.1 plugin (Debian's
// golang-github-hashicorp-go-plugin-dev, GOPATH mode) serving the KV example over gRPC, for
// connectplugin hosts to launch: cookie KV_PLUGIN=connectplugin-kv, app protocol version 1, plugin
// "kv". Put, Get and Delete are unary grpc.MethodDescs; List (server stream), PutMany (client
// stream) and Watch (bidi) are grpc.StreamDescs, with the store semantics of
// examples/proto/README.md except the reserved key __error__ (an ordinary key here); an empty key
// is invalid_argument. Served through plugin.Serve with plugin.DefaultGRPCServer, the way a
// go-plugin user writes it; messages are hand-encoded protobuf (protowire) behind a raw codec
// forced on the server, so no generated code is needed. It logs through hclog (JSON on stderr).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

type rawCodec struct{}

func (rawCodec) Name() string   { return "proto" }
func (rawCodec) String() string { return "proto" }
func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		// go-plugin's own services (health, controller) use generated messages: hand them to proto.
		return encoding.GetCodec("proto").Marshal(v)
	}
	return *b, nil
}
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	b, ok := v.(*[]byte)
	if !ok {
		return encoding.GetCodec("proto").Unmarshal(data, v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// store is the KV map and the Watch calls registered on it; mu covers both, so that every
// mutation is atomic with respect to List snapshots and Watch registrations.
type store struct {
	mu       sync.Mutex
	m        map[string][]byte
	watchers map[*watcher]struct{}
}

// fields decodes the length-delimited fields 1 (string) and 2 (bytes) of a request: key and value,
// or prefix.
func fields(b []byte) (string, []byte, error) {
	var f1 string
	var f2 []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, status.Error(codes.InvalidArgument, "bad request")
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return "", nil, status.Error(codes.InvalidArgument, "bad request")
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return "", nil, status.Error(codes.InvalidArgument, "bad request")
		}
		b = b[m:]
		switch num {
		case 1:
			f1 = string(v)
		case 2:
			f2 = append([]byte(nil), v...)
		}
	}
	return f1, f2, nil
}

// keyFields decodes a request with a key (PutRequest, GetRequest, DeleteRequest).
func keyFields(b []byte) (string, []byte, error) {
	key, value, err := fields(b)
	if err == nil && key == "" {
		err = status.Error(codes.InvalidArgument, "key must not be empty")
	}
	return key, value, err
}

// item encodes a ListResponse or a WatchEvent: key (1), value (2), deleted (3).
func item(key string, value []byte, deleted bool) []byte {
	out := protowire.AppendTag(nil, 1, protowire.BytesType)
	out = protowire.AppendString(out, key)
	if len(value) > 0 {
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendBytes(out, value)
	}
	if deleted {
		out = append(out, 0x18, 0x01)
	}
	return out
}

// watcher is one Watch call: its prefixes (guarded by store.mu) and the events queued for it.
type watcher struct {
	prefixes []string

	mu     sync.Mutex
	queue  [][]byte
	closed bool  // the client half-closed: send the queue, then end OK
	err    error // the call failed: send the queue, then fail
	wake   chan struct{}
}

func (w *watcher) push(ev []byte) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) matches(key string) bool {
	for _, p := range w.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// notify queues an event for every watcher of key; s.mu is held.
func (s *store) notify(key string, value []byte, deleted bool) {
	for w := range s.watchers {
		if w.matches(key) {
			w.push(item(key, value, deleted))
		}
	}
}

func (s *store) put(key string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = value
	s.notify(key, value, false)
}

func (s *store) delete(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[key]
	if ok {
		delete(s.m, key)
		s.notify(key, nil, true)
	}
	return ok
}

// sortedKeys returns the stored keys starting with prefix, in order; s.mu is held.
func (s *store) sortedKeys(prefix string) []string {
	var keys []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (s *store) handle(method string, req []byte) ([]byte, error) {
	key, value, err := keyFields(req)
	if err != nil {
		return nil, err
	}
	switch method {
	case "Put":
		s.put(key, value)
		return []byte{}, nil
	case "Get":
		s.mu.Lock()
		v, ok := s.m[key]
		s.mu.Unlock()
		var out []byte
		if len(v) > 0 {
			out = protowire.AppendTag(out, 1, protowire.BytesType)
			out = protowire.AppendBytes(out, v)
		}
		if ok {
			out = append(out, 0x10, 0x01)
		}
		return out, nil
	default: // Delete
		if s.delete(key) {
			return []byte{0x08, 0x01}, nil
		}
		return []byte{}, nil
	}
}

// list serves List: one request, then one ListResponse per matching key from one snapshot.
func (s *store) list(stream grpc.ServerStream) error {
	var req []byte
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	prefix, _, err := fields(req)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var items [][]byte
	for _, k := range s.sortedKeys(prefix) {
		items = append(items, item(k, s.m[k], false))
	}
	s.mu.Unlock()
	for i := range items {
		if err := stream.SendMsg(&items[i]); err != nil {
			return err
		}
	}
	return nil
}

// putMany serves PutMany: stores each item as it arrives, then answers the count.
func (s *store) putMany(stream grpc.ServerStream) error {
	var count int64
	for {
		var req []byte
		err := stream.RecvMsg(&req)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		key, value, err := keyFields(req)
		if err != nil {
			return err
		}
		s.put(key, value)
		count++
	}
	var out []byte
	if count != 0 {
		out = protowire.AppendTag(out, 1, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(count))
	}
	return stream.SendMsg(&out)
}

// watch serves Watch: a goroutine reads the prefixes (replaying each one's keys atomically with
// registering it) while this one sends the queued events, until the client half-closes (end OK
// once the queue is sent), a request fails (its error after the queue) or the call is canceled.
func (s *store) watch(stream grpc.ServerStream) error {
	w := &watcher{wake: make(chan struct{}, 1)}
	unregister := func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}
	defer unregister()
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		for {
			var req []byte
			err := stream.RecvMsg(&req)
			var prefix string
			if err == nil {
				prefix, _, err = fields(req)
			}
			if err != nil {
				unregister() // nothing is queued after the half-close or the failure
				w.mu.Lock()
				if err == io.EOF {
					w.closed = true
				} else {
					w.err = err
				}
				w.mu.Unlock()
				w.signal()
				return
			}
			s.mu.Lock()
			for _, k := range s.sortedKeys(prefix) {
				w.push(item(k, s.m[k], false))
			}
			w.prefixes = append(w.prefixes, prefix)
			s.mu.Unlock()
		}
	}()
	for {
		w.mu.Lock()
		queue, closed, err := w.queue, w.closed, w.err
		w.queue = nil
		w.mu.Unlock()
		for i := range queue {
			if err := stream.SendMsg(&queue[i]); err != nil {
				return err
			}
		}
		if len(queue) > 0 {
			continue // more may have been queued meanwhile
		}
		if err != nil {
			return err
		}
		if closed {
			return nil
		}
		select {
		case <-w.wake:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

func serviceDesc(s *store) *grpc.ServiceDesc {
	desc := &grpc.ServiceDesc{ServiceName: "connectplugin.examples.kv.v1.KVService", HandlerType: (*interface{})(nil)}
	for _, m := range []string{"Put", "Get", "Delete"} {
		method := m
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: method,
			Handler: func(_ interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
				var req []byte
				if err := dec(&req); err != nil {
					return nil, err
				}
				resp, err := s.handle(method, req)
				if err != nil {
					return nil, err
				}
				return &resp, nil
			},
		})
	}
	desc.Streams = []grpc.StreamDesc{
		{StreamName: "List", ServerStreams: true,
			Handler: func(_ interface{}, stream grpc.ServerStream) error { return s.list(stream) }},
		{StreamName: "PutMany", ClientStreams: true,
			Handler: func(_ interface{}, stream grpc.ServerStream) error { return s.putMany(stream) }},
		{StreamName: "Watch", ServerStreams: true, ClientStreams: true,
			Handler: func(_ interface{}, stream grpc.ServerStream) error { return s.watch(stream) }},
	}
	return desc
}

type kvPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	store *store
}

func (p *kvPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(serviceDesc(p.store), p.store)
	return nil
}

func (p *kvPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, fmt.Errorf("this binary is the plugin side only")
}

func main() {
	logger := hclog.New(&hclog.LoggerOptions{Name: "goplugin-kv", Level: hclog.Trace, Output: os.Stderr, JSONFormat: true})
	logger.Info("go-plugin kv plugin starting", "pid", os.Getpid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion: 1, MagicCookieKey: "KV_PLUGIN", MagicCookieValue: "connectplugin-kv",
		},
		Plugins: map[string]plugin.Plugin{"kv": &kvPlugin{store: &store{m: map[string][]byte{}, watchers: map[*watcher]struct{}{}}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.CustomCodec(rawCodec{})))
		},
		Logger: logger,
	})
}
