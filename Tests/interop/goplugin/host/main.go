// Command goplugin-host is an unmodified HashiCorp go-plugin host (Debian's
// golang-github-hashicorp-go-plugin-dev 1.0.1, GOPATH mode): it launches a KV plugin with
// plugin.NewClient, dispenses "kv" through a GRPCPlugin whose client calls the plugin's
// KVService over the *grpc.ClientConn go-plugin dialed, runs Put/Get/Delete, pings, and kills the
// plugin (GRPCController.Shutdown, then go-plugin's 2 s wait before SIGKILL).
//
//	goplugin-host PLUGIN [ARGS...]
//
// With GOPLUGIN_HOST_AUTOMTLS=1 in its environment it sets ClientConfig.AutoMTLS (go-plugin's
// own certificate exchange; the plugin must serve TLS).
//
// KV handshake: cookie KV_PLUGIN=connectplugin-kv, app protocol version 1, plugin name "kv".
// Each step prints one line; exit 0 when all matched, 1 otherwise. Messages are hand-encoded
// protobuf (protowire) carried by a raw codec forced per call, so go-plugin's own health and
// controller calls keep the real proto codec.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

const service = "/connectplugin.examples.kv.v1.KVService/"

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	return *(v.(*[]byte)), nil
}
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	b := v.(*[]byte)
	*b = append((*b)[:0], data...)
	return nil
}

// KV is what dispense("kv") gives the host.
type KV interface {
	Put(key string, value []byte) error
	Get(key string) ([]byte, bool, error)
	Delete(key string) (bool, error)
}

type kvClient struct{ conn *grpc.ClientConn }

func (c *kvClient) call(method string, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var resp []byte
	err := c.conn.Invoke(ctx, service+method, &req, &resp, grpc.ForceCodec(rawCodec{}))
	return resp, err
}

func keyMsg(key string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, key)
}

func (c *kvClient) Put(key string, value []byte) error {
	req := keyMsg(key)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, value)
	_, err := c.call("Put", req)
	return err
}

func (c *kvClient) Get(key string) ([]byte, bool, error) {
	resp, err := c.call("Get", keyMsg(key))
	if err != nil {
		return nil, false, err
	}
	var value []byte
	found := false
	for len(resp) > 0 {
		num, typ, n := protowire.ConsumeTag(resp)
		if n < 0 {
			return nil, false, fmt.Errorf("bad GetResponse")
		}
		resp = resp[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(resp)
			if m < 0 {
				return nil, false, fmt.Errorf("bad GetResponse")
			}
			value, resp = append([]byte(nil), v...), resp[m:]
		case num == 2 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(resp)
			if m < 0 {
				return nil, false, fmt.Errorf("bad GetResponse")
			}
			found, resp = v != 0, resp[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, resp)
			if m < 0 {
				return nil, false, fmt.Errorf("bad GetResponse")
			}
			resp = resp[m:]
		}
	}
	return value, found, nil
}

func (c *kvClient) Delete(key string) (bool, error) {
	resp, err := c.call("Delete", keyMsg(key))
	if err != nil {
		return false, err
	}
	if len(resp) >= 2 && resp[0] == 0x08 {
		return resp[1] != 0, nil
	}
	return false, nil
}

// kvPlugin is the host half of the go-plugin pattern: GRPCClient wraps the dispensed connection.
type kvPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (kvPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return fmt.Errorf("this host does not serve kv")
}

func (kvPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &kvClient{conn: c}, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goplugin-host PLUGIN [ARGS...]")
		os.Exit(2)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "goplugin-host", Output: os.Stderr, Level: hclog.Debug})
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion: 1, MagicCookieKey: "KV_PLUGIN", MagicCookieValue: "connectplugin-kv",
		},
		Plugins:          map[string]plugin.Plugin{"kv": &kvPlugin{}},
		Cmd:              exec.Command(os.Args[1], os.Args[2:]...),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		StartTimeout:     30 * time.Second,
		AutoMTLS:         os.Getenv("GOPLUGIN_HOST_AUTOMTLS") == "1",
	})
	defer client.Kill()
	ok := true
	check := func(name string, good bool, detail string) {
		if good {
			fmt.Printf("ok %s %s\n", name, detail)
		} else {
			fmt.Printf("FAIL %s %s\n", name, detail)
			ok = false
		}
	}
	rpc, err := client.Client()
	if err != nil {
		fmt.Printf("FAIL start %v\n", err)
		os.Exit(1)
	}
	check("version", client.NegotiatedVersion() == 1, fmt.Sprint(client.NegotiatedVersion()))
	raw, err := rpc.Dispense("kv")
	if err != nil {
		fmt.Printf("FAIL dispense %v\n", err)
		os.Exit(1)
	}
	kv := raw.(KV)
	err = kv.Put("greeting", []byte("hello"))
	check("put", err == nil, fmt.Sprint(err))
	v, found, err := kv.Get("greeting")
	check("get", err == nil && found && string(v) == "hello", fmt.Sprintf("%q %v %v", v, found, err))
	existed, err := kv.Delete("greeting")
	check("delete", err == nil && existed, fmt.Sprintf("%v %v", existed, err))
	_, found, err = kv.Get("greeting")
	check("get-after-delete", err == nil && !found, fmt.Sprintf("%v %v", found, err))
	err = rpc.Ping()
	check("ping", err == nil, fmt.Sprint(err))
	start := time.Now()
	client.Kill()
	// Kill waits 2 s for the process to exit after Shutdown before SIGKILL: a plugin that stops
	// on GRPCController.Shutdown is gone well before that.
	check("kill", client.Exited() && time.Since(start) < 1900*time.Millisecond, time.Since(start).Round(time.Millisecond).String())
	if !ok {
		os.Exit(1)
	}
}
