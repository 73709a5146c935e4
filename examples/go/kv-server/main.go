// kv-server-go serves connectplugin.examples.kv.v1.KVService (see examples/README.md).
//
//	kv-server-go --listen 127.0.0.1:0
//	kv-server-go --listen unix:/tmp/kv.sock
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	connectplugin "github.com/connectplugin/connectplugin/bindings/go"
	"github.com/connectplugin/connectplugin/examples/go/internal/kv"
)

// store is the in-memory map shared by all calls.
type store struct {
	mu sync.Mutex
	m  map[string][]byte
}

func decode(req *connectplugin.Request, m kv.Message) error {
	if err := kv.Unmarshal(req.Codec, req.Message, m); err != nil {
		return connectplugin.NewError(connectplugin.CodeInvalidArgument,
			fmt.Sprintf("cannot decode %s: %v", m.MessageName(), err))
	}
	return nil
}

func encode(req *connectplugin.Request, m kv.Message) ([]byte, error) {
	b, err := kv.Marshal(req.Codec, m)
	if err != nil {
		return nil, connectplugin.NewError(connectplugin.CodeInternal, err.Error())
	}
	return b, nil
}

func errEmptyKey() error {
	return connectplugin.NewError(connectplugin.CodeInvalidArgument, "key must not be empty")
}

func (s *store) put(_ context.Context, req *connectplugin.Request) ([]byte, error) {
	var in kv.PutRequest
	if err := decode(req, &in); err != nil {
		return nil, err
	}
	if in.Key == "" {
		return nil, errEmptyKey()
	}
	s.mu.Lock()
	s.m[in.Key] = append([]byte(nil), in.Value...)
	s.mu.Unlock()
	return encode(req, &kv.PutResponse{})
}

func (s *store) get(_ context.Context, req *connectplugin.Request) ([]byte, error) {
	var in kv.GetRequest
	if err := decode(req, &in); err != nil {
		return nil, err
	}
	if in.Key == "" {
		return nil, errEmptyKey()
	}
	s.mu.Lock()
	v, ok := s.m[in.Key]
	s.mu.Unlock()
	return encode(req, &kv.GetResponse{Value: v, Found: ok})
}

func (s *store) delete(_ context.Context, req *connectplugin.Request) ([]byte, error) {
	var in kv.DeleteRequest
	if err := decode(req, &in); err != nil {
		return nil, err
	}
	if in.Key == "" {
		return nil, errEmptyKey()
	}
	s.mu.Lock()
	_, ok := s.m[in.Key]
	delete(s.m, in.Key)
	s.mu.Unlock()
	return encode(req, &kv.DeleteResponse{Existed: ok})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port (port 0 picks one) or unix:PATH")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unexpected arguments: %v\n", flag.Args())
		os.Exit(2)
	}
	os.Exit(run(*listen))
}

func run(listen string) int {
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "error: %s: %v\n", what, err)
		return 1
	}
	// Subscribe before announcing the address, so an early signal is never missed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	srv, err := connectplugin.NewServer()
	if err != nil {
		return fail("new server", err)
	}
	defer srv.Close()

	s := &store{m: map[string][]byte{}}
	for proc, h := range map[string]connectplugin.UnaryHandler{
		kv.ProcedurePut: s.put,
		kv.ProcedureGet: s.get,
		kv.ProcedureDel: s.delete,
	} {
		if err := srv.HandleUnary(proc, h); err != nil {
			return fail("register "+proc, err)
		}
	}

	var bound string
	if strings.HasPrefix(listen, "unix:") {
		bound, err = srv.ListenUnix(strings.TrimPrefix(listen, "unix:"))
	} else {
		bound, err = srv.ListenTCP(listen)
	}
	if err != nil {
		return fail("listen on "+listen, err)
	}
	if err := srv.Start(); err != nil {
		return fail("start", err)
	}
	fmt.Printf("listening on %s\n", bound) // os.Stdout is unbuffered: the line is flushed
	_ = os.Stdout.Sync()

	<-sigs
	signal.Stop(sigs)
	if err := srv.Stop(5 * time.Second); err != nil {
		return fail("stop", err)
	}
	srv.Close()
	return 0
}
