package connectplugin

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// newRecordingServer is a net/http stand-in for a Connect server: it reports the method and query of
// every request and answers with an empty proto message.
func newRecordingServer(t *testing.T, record func(method, query string)) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r.Method, r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/proto")
		w.WriteHeader(200)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// Connect GET for methods without side effects: our client sends GET only with WithHTTPGet and
// NoSideEffects, and our server accepts it only for procedures marked with SetNoSideEffects.
func TestNoSideEffectsGET(t *testing.T) {
	ss := newStreamServer(t, nil)
	for _, httpv := range []string{"1.1", "2"} {
		for _, codec := range []string{"proto", "json"} {
			cli := newTestClient(t, ss.url, WithHTTPGet(true), WithHTTPVersion(httpv), WithCodec(codec))
			for i := 0; i < 2; i++ {
				resp, err := cli.CallUnary(context.Background(), procSUnary, []byte(strconv.Itoa(40+i)), NoSideEffects())
				if err != nil {
					t.Fatalf("GET h%s %s: %v", httpv, codec, err)
				}
				wantBytes(t, "GET response", resp.Message, []byte(strconv.Itoa(40+i)))
			}
		}
	}
}

func TestNoSideEffectsOnTheWire(t *testing.T) {
	type seen struct{ method, query string }
	got := make(chan seen, 4)
	hs := newRecordingServer(t, func(method, query string) { got <- seen{method, query} })
	cli := newTestClient(t, hs, WithHTTPGet(true), WithHTTPVersion("1.1"))
	if _, err := cli.CallUnary(context.Background(), procSUnary, []byte("hi"), NoSideEffects()); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.method != "GET" || !strings.Contains(s.query, "connect=v1") || !strings.Contains(s.query, "encoding=proto") ||
		!strings.Contains(s.query, "message=") {
		t.Fatalf("with NoSideEffects: %s ?%s, want a Connect GET", s.method, s.query)
	}
	if _, err := cli.CallUnary(context.Background(), procSUnary, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.method != "POST" {
		t.Fatalf("without NoSideEffects: %s, want POST", s.method)
	}
	cli2 := newTestClient(t, hs, WithHTTPVersion("1.1"))
	if _, err := cli2.CallUnary(context.Background(), procSUnary, []byte("hi"), NoSideEffects()); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.method != "POST" {
		t.Fatalf("without WithHTTPGet: %s, want POST", s.method)
	}
}

// A foreign client's Connect GET reaches a procedure marked with SetNoSideEffects; other procedures
// refuse GET with 405.
func TestServerAcceptsConnectGET(t *testing.T) {
	ss := newStreamServer(t, nil)
	q := url.Values{"connect": {"v1"}, "encoding": {"proto"}, "base64": {"1"},
		"message": {base64.RawURLEncoding.EncodeToString([]byte("77"))}}
	resp, err := http.Get(ss.url + procSUnary + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 16)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body[:n]) != "77" {
		t.Fatalf("GET of a no-side-effects procedure: %d %q", resp.StatusCode, body[:n])
	}
	resp, err = http.Get(ss.url + procCount + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET of a streaming procedure: %d, want 405", resp.StatusCode)
	}
}
