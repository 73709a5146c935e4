// Package kvservice is the Go KV service's handlers (examples/proto/README.md), shared by
// kv-server-go, kv-plugin-go and kv-host-go --in-process (the host's own KV service served as an
// in-process plugin).
package kvservice

import (
	"context"
	"fmt"
	"io"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
	"github.com/connectplugin/connectplugin/examples/go/internal/kv"
)

// slowHold is how long Get{__slow__} holds the call (unless the call ends first).
const slowHold = time.Second

type server struct {
	store *kv.Store
	// log, when set (a plugin), receives a debug record per Put.
	log *connectplugin.PluginLogger
}

func decode(codec string, data []byte, m kv.Message) error {
	if err := kv.Unmarshal(codec, data, m); err != nil {
		return connectplugin.NewError(connectplugin.CodeInvalidArgument,
			fmt.Sprintf("cannot decode %s: %v", m.MessageName(), err))
	}
	return nil
}

func encode(codec string, m kv.Message) ([]byte, error) {
	b, err := kv.Marshal(codec, m)
	if err != nil {
		return nil, connectplugin.NewError(connectplugin.CodeInternal, err.Error())
	}
	return b, nil
}

func errEmptyKey() error {
	return connectplugin.NewError(connectplugin.CodeInvalidArgument, kv.EmptyKeyMessage)
}

// errReserved is failed_precondition "key is reserved" with a google.rpc.ErrorInfo detail.
func errReserved() error {
	return connectplugin.NewError(connectplugin.CodeFailedPrecondition, kv.ReservedMessage,
		connectplugin.ErrorDetail{Type: kv.ErrorInfoType, Value: kv.ReservedKeyInfo().Marshal()})
}

// checkKey validates the key of Put, Get, Delete and PutMany items.
func checkKey(key string) error {
	switch key {
	case "":
		return errEmptyKey()
	case kv.ErrorKey:
		return errReserved()
	}
	return nil
}

func (s *server) put(_ context.Context, req *connectplugin.Request) ([]byte, error) {
	var in kv.PutRequest
	if err := decode(req.Codec, req.Message, &in); err != nil {
		return nil, err
	}
	if err := checkKey(in.Key); err != nil {
		return nil, err
	}
	if s.log != nil {
		s.log.Debug("put", "key", in.Key, "bytes", len(in.Value))
	}
	s.store.Put(in.Key, in.Value)
	return encode(req.Codec, &kv.PutResponse{})
}

func (s *server) get(ctx context.Context, req *connectplugin.Request) ([]byte, error) {
	var in kv.GetRequest
	if err := decode(req.Codec, req.Message, &in); err != nil {
		return nil, err
	}
	if err := checkKey(in.Key); err != nil {
		return nil, err
	}
	if in.Key == kv.SlowKey {
		// The deadline hook: hold the call, but stop as soon as it is over (deadline passed, client
		// gone). IsDone is polled on the handler's goroutine, as the library requires.
		hold := time.NewTimer(slowHold)
		defer hold.Stop()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
	wait:
		for {
			select {
			case <-hold.C:
				break wait
			case <-ctx.Done():
				return nil, ctx.Err() // deadline_exceeded
			case <-tick.C:
				if req.IsDone() {
					return nil, connectplugin.NewError(connectplugin.CodeCanceled, "the call is over")
				}
			}
		}
	}
	v, ok := s.store.Get(in.Key)
	return encode(req.Codec, &kv.GetResponse{Value: v, Found: ok})
}

func (s *server) delete(_ context.Context, req *connectplugin.Request) ([]byte, error) {
	var in kv.DeleteRequest
	if err := decode(req.Codec, req.Message, &in); err != nil {
		return nil, err
	}
	if err := checkKey(in.Key); err != nil {
		return nil, err
	}
	return encode(req.Codec, &kv.DeleteResponse{Existed: s.store.Delete(in.Key)})
}

// list streams every key with the prefix, in sorted order, from one snapshot.
func (s *server) list(st *connectplugin.ServerStream) error {
	data, err := st.Receive()
	if err != nil {
		return err // io.EOF cannot happen: the library delivers exactly one request message
	}
	var in kv.ListRequest
	if err := decode(st.Codec(), data, &in); err != nil {
		return err
	}
	if in.Prefix == kv.ErrorKey {
		return errReserved()
	}
	for _, ev := range s.store.List(in.Prefix) {
		b, err := encode(st.Codec(), &kv.ListResponse{Key: ev.Key, Value: ev.Value})
		if err != nil {
			return err
		}
		if err := st.Send(b); err != nil {
			return err
		}
	}
	return nil
}

// putMany stores each item as it arrives; the first invalid item fails the call.
func (s *server) putMany(st *connectplugin.ServerStream) error {
	var count int64
	for {
		data, err := st.Receive()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		var in kv.PutRequest
		if err := decode(st.Codec(), data, &in); err != nil {
			return err
		}
		if err := checkKey(in.Key); err != nil {
			return err
		}
		s.store.Put(in.Key, in.Value)
		count++
	}
	b, err := encode(st.Codec(), &kv.PutManyResponse{Count: count})
	if err != nil {
		return err
	}
	return st.Send(b)
}

// watch is full duplex: a goroutine receives the prefixes while this one sends the events. The
// call ends OK after the client half-closed and the queued events went out, or with the error of
// the first bad request (after the events queued before it), or when the client goes away.
func (s *server) watch(st *connectplugin.ServerStream) error {
	w := s.store.Watch()
	defer w.Close()
	codec := st.Codec()
	go func() {
		for {
			data, err := st.Receive()
			if err == io.EOF {
				w.End(nil)
				return
			}
			if err != nil {
				w.End(err)
				return
			}
			var in kv.WatchRequest
			if err := decode(codec, data, &in); err != nil {
				w.End(err)
				return
			}
			if in.Prefix == kv.ErrorKey {
				w.End(errReserved())
				return
			}
			w.AddPrefix(in.Prefix)
		}
	}()
	for {
		ev, ok, err := w.Next()
		if !ok {
			return err
		}
		b, err := encode(codec, &kv.WatchEvent{Key: ev.Key, Value: ev.Value, Deleted: ev.Deleted})
		if err != nil {
			return err
		}
		if err := st.Send(b); err != nil {
			return err
		}
	}
}

// Register registers KVService's handlers on srv (a new store).
func Register(srv *connectplugin.Server) error { return RegisterLogged(srv, nil) }

// RegisterLogged is Register with a plugin logger that gets a debug record per Put (nil: none).
func RegisterLogged(srv *connectplugin.Server, log *connectplugin.PluginLogger) error {
	fail := func(what string, err error) error { return fmt.Errorf("%s: %w", what, err) }
	s := &server{store: kv.NewStore(), log: log}
	for proc, h := range map[string]connectplugin.UnaryHandler{
		kv.ProcedurePut: s.put,
		kv.ProcedureGet: s.get,
		kv.ProcedureDel: s.delete,
	} {
		if err := srv.HandleUnary(proc, h); err != nil {
			return fail("register "+proc, err)
		}
	}
	for _, r := range []struct {
		proc string
		kind connectplugin.StreamKind
		h    connectplugin.StreamHandler
	}{
		{kv.ProcedureList, connectplugin.KindServerStream, s.list},
		{kv.ProcedurePutMany, connectplugin.KindClientStream, s.putMany},
		{kv.ProcedureWatch, connectplugin.KindBidiStream, s.watch},
	} {
		if err := srv.RegisterStream(r.proc, r.kind, r.h); err != nil {
			return fail("register "+r.proc, err)
		}
	}
	// Get has idempotency_level = NO_SIDE_EFFECTS: it also accepts Connect GET requests.
	if err := srv.SetNoSideEffects(kv.ProcedureGet); err != nil {
		return fail("no side effects "+kv.ProcedureGet, err)
	}
	return nil
}
