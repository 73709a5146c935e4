// Command goplugin-kv-plugin is an unmodified HashiCorp go-plugin 1.0.1 plugin (Debian's
// golang-github-hashicorp-go-plugin-dev, GOPATH mode) serving the KV example's Put, Get and
// Delete over gRPC, for connectplugin hosts to launch: cookie KV_PLUGIN=connectplugin-kv, app
// protocol version 1, plugin "kv". Served through plugin.Serve with plugin.DefaultGRPCServer, the
// way a go-plugin user writes it; messages are hand-encoded protobuf (protowire) behind a raw codec
// forced on the server, so no generated code is needed. It logs through hclog (JSON on stderr) and
// writes one line to its own stdout after starting, which go-plugin v1.0.1 never forwards.
package main

import (
	"context"
	"fmt"
	"os"
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

type store struct {
	mu sync.Mutex
	m  map[string][]byte
}

// fields decodes key (1, string) and value (2, bytes).
func fields(b []byte) (string, []byte, error) {
	var key string
	var value []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, fmt.Errorf("bad request")
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return "", nil, fmt.Errorf("bad request")
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return "", nil, fmt.Errorf("bad request")
		}
		b = b[m:]
		switch num {
		case 1:
			key = string(v)
		case 2:
			value = append([]byte(nil), v...)
		}
	}
	if key == "" {
		return "", nil, status.Error(codes.InvalidArgument, "key must not be empty")
	}
	return key, value, nil
}

func (s *store) handle(method string, req []byte) ([]byte, error) {
	key, value, err := fields(req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch method {
	case "Put":
		s.m[key] = value
		return []byte{}, nil
	case "Get":
		v, ok := s.m[key]
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
		_, ok := s.m[key]
		delete(s.m, key)
		if ok {
			return []byte{0x08, 0x01}, nil
		}
		return []byte{}, nil
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
		Plugins: map[string]plugin.Plugin{"kv": &kvPlugin{store: &store{m: map[string][]byte{}}}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.CustomCodec(rawCodec{})))
		},
		Logger: logger,
	})
}
