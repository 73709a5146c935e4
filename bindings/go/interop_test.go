package connectplugin

// Checks against peers that are not libconnectplugin: a net/http server stands in for a Connect
// server (so the client's options are observed on the wire) and a net/http client calls the
// library's server with the Connect unary protocol.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestClientWireHTTP1GzipHeadersTimeout(t *testing.T) {
	type seen struct {
		proto, method, path, ctype, encoding, timeout, custom, version string
		body                                                           []byte
	}
	got := make(chan seen, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{proto: r.Proto, method: r.Method, path: r.URL.Path, ctype: r.Header.Get("Content-Type"),
			encoding: r.Header.Get("Content-Encoding"), timeout: r.Header.Get("Connect-Timeout-Ms"),
			custom: r.Header.Get("X-Custom"), version: r.Header.Get("Connect-Protocol-Version")}
		var body io.Reader = r.Body
		if s.encoding == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		s.body, _ = io.ReadAll(body)
		got <- s
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Resp", "r1")
		w.Header().Set("Trailer-X-Tr", "t1")
		w.Write([]byte(`{"answer":42}`))
	}))
	defer hs.Close()

	c := newTestClient(t, hs.URL, WithHTTPVersion("1.1"), WithCodec("json"), WithCompression("gzip"),
		WithHeader("x-custom", "c1"))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond+300*time.Microsecond)
	defer cancel()
	req := []byte(`{"q":"` + strings.Repeat("x", 2000) + `"}`)
	resp, err := c.CallUnary(ctx, "/test.v1.TestService/Wire", req)
	if err != nil {
		t.Fatalf("CallUnary: %v", err)
	}
	s := <-got
	if s.proto != "HTTP/1.1" || s.method != "POST" || s.path != "/test.v1.TestService/Wire" {
		t.Fatalf("request line %s %s %s", s.method, s.path, s.proto)
	}
	if s.ctype != "application/json" || s.version != "1" || s.custom != "c1" {
		t.Fatalf("headers: content-type %q, connect-protocol-version %q, x-custom %q", s.ctype, s.version, s.custom)
	}
	if s.encoding != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", s.encoding)
	}
	if !bytes.Equal(s.body, req) {
		t.Fatalf("server received %d bytes, want the %d sent", len(s.body), len(req))
	}
	// The ctx deadline (about 1500.3 ms) becomes Connect-Timeout-Ms, rounded up.
	if s.timeout != "1500" && s.timeout != "1501" {
		t.Fatalf("Connect-Timeout-Ms %q, want 1500 or 1501", s.timeout)
	}
	wantBytes(t, "message", resp.Message, []byte(`{"answer":42}`))
	if resp.Header.Get("x-resp") != "r1" || resp.Trailer.Get("x-tr") != "t1" {
		t.Fatalf("headers %v trailers %v", resp.Header, resp.Trailer)
	}
}

func TestClientWireHTTP2PriorKnowledge(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	preface := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			preface <- err.Error()
			return
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 24)
		_, err = io.ReadFull(conn, buf)
		if err != nil {
			preface <- err.Error()
			return
		}
		preface <- string(buf)
	}()
	c := newTestClient(t, "http://"+l.Addr().String(), WithHTTPVersion("2"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = c.CallUnary(ctx, procEcho, []byte("x"))
	if err == nil {
		t.Fatal("call to a fake server succeeded")
	}
	if p := <-preface; p != "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
		t.Fatalf("first bytes %q, want the HTTP/2 client preface", p)
	}
}

func TestServerWithNetHTTPClient(t *testing.T) {
	ts := newTestServer(t)
	base := ts.tcpURL

	// Success, JSON codec, custom header echoed back, trailer as "trailer-" header.
	req, _ := http.NewRequest("POST", base+procEcho, strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("X-Req", "plain-http")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"a":1}` {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Req-Echo") != "plain-http" || resp.Header.Get("X-Codec") != "json" ||
		resp.Header.Get("Trailer-X-Trailer") != "t1" {
		t.Fatalf("response headers %v", resp.Header)
	}

	// Error: Connect JSON error body with code, message and details.
	req, _ = http.NewRequest("POST", base+procFail, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var ce struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"details"`
	}
	if err := json.Unmarshal(body, &ce); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if resp.StatusCode != 404 || ce.Code != "not_found" || ce.Message != "no such thing" ||
		len(ce.Details) != 2 || ce.Details[0].Type != "google.rpc.ErrorInfo" {
		t.Fatalf("status %d error %+v (body %s)", resp.StatusCode, ce, body)
	}
	if resp.Header.Get("X-Err") != "yes" {
		t.Fatalf("error response headers %v lack x-err", resp.Header)
	}

	// Gzip request body from a foreign client.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("compressed hello"))
	zw.Close()
	req, _ = http.NewRequest("POST", base+procEcho, &gz)
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body) // net/http transparently gunzips only if it asked; it did not here
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(zr)
	}
	if resp.StatusCode != 200 || string(body) != "compressed hello" {
		t.Fatalf("gzip echo: status %d body %q", resp.StatusCode, body)
	}
}
