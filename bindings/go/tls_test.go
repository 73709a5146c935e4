package connectplugin

import (
	"context"
	"strings"
	"testing"
)

func listenTLS(cfg *TLSConfig) func(*Server) (string, error) {
	return func(s *Server) (string, error) { return s.ListenTLS("127.0.0.1:0", cfg) }
}

// https on HTTP/1.1 and HTTP/2 (ALPN), every protocol, server verified with our CA.
func TestTLSEveryProtocolAndHTTPVersion(t *testing.T) {
	pki := newTestPKI(t)
	ss := newStreamServer(t, listenTLS(&TLSConfig{CertFile: pki.ServerCert, KeyFile: pki.ServerKey}))
	port := ss.addr[strings.LastIndexByte(ss.addr, ':')+1:]
	for _, c := range combos() {
		if c.codec != "proto" {
			continue
		}
		c := c
		t.Run(c.String(), func(t *testing.T) {
			for _, target := range []struct {
				url string
				cfg *TLSConfig
			}{
				{"https://" + ss.addr, &TLSConfig{CAFile: pki.CAFile}},
				{"https://localhost:" + port, &TLSConfig{CAPEM: pki.CAPEM}},
				{"https://" + ss.addr, &TLSConfig{InsecureSkipVerify: true}},
			} {
				cli := c.client(t, target.url, WithTLS(target.cfg))
				resp, err := cli.CallUnary(context.Background(), procSUnary, []byte("1"))
				if err != nil {
					t.Fatalf("%s: unary: %v", target.url, err)
				}
				if resp.Header.Get("x-protocol") != c.protocol || resp.Header.Get("x-peer") != "none" {
					t.Fatalf("unary headers %v", resp.Header)
				}
				s, err := cli.CallServerStream(context.Background(), procCount, []byte("3"))
				if err != nil {
					t.Fatal(err)
				}
				got, err := receiveAll(s)
				s.Close()
				if err != nil || strings.Join(got, ",") != "0,1,2" {
					t.Fatalf("server stream over TLS: %v %v", got, err)
				}
				if s.Header().Get("x-peer") != "none" {
					t.Fatalf("peer without a client certificate: %v", s.Header())
				}
			}
		})
	}
}

// mTLS: the handler sees the client certificate; a client without one, or with an unknown CA,
// gets UNAVAILABLE with a message that says why.
func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	ss := newStreamServer(t, listenTLS(&TLSConfig{CertPEM: pki.ServerCertPEM, KeyPEM: pki.ServerKeyPEM,
		CAPEM: pki.CAPEM, RequireClientCert: true}))
	url := "https://" + ss.addr
	wantSubject := "CN=" + pki.ClientSubjectCN
	for _, c := range combos() {
		if c.codec != "proto" {
			continue
		}
		c := c
		t.Run(c.String(), func(t *testing.T) {
			for _, cfg := range []*TLSConfig{
				{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey},
				{CAPEM: pki.CAPEM, CertPEM: pki.ClientCertPEM, KeyPEM: pki.ClientKeyPEM, ServerName: "localhost"},
			} {
				cli := c.client(t, url, WithTLS(cfg))
				resp, err := cli.CallUnary(context.Background(), procSUnary, []byte("1"))
				if err != nil {
					t.Fatalf("unary with a client certificate: %v", err)
				}
				if got := resp.Header.Get("x-peer"); !strings.Contains(got, wantSubject) {
					t.Fatalf("unary handler saw peer %q, want %q", got, wantSubject)
				}
				resp, err = cli.CallClientStream(context.Background(), procSum, [][]byte{[]byte("2"), []byte("3")})
				if err != nil {
					t.Fatalf("client stream with a client certificate: %v", err)
				}
				if got := resp.Header.Get("x-peer"); !strings.Contains(got, wantSubject) {
					t.Fatalf("stream handler saw peer %q, want %q", got, wantSubject)
				}
				wantBytes(t, "sum", resp.Message, []byte("5"))
			}

			// No client certificate.
			cli := c.client(t, url, WithTLS(&TLSConfig{CAFile: pki.CAFile}))
			_, err := cli.CallUnary(context.Background(), procSUnary, []byte("1"))
			e := wantCode(t, err, CodeUnavailable)
			if !strings.Contains(e.Message, "client certificate") {
				t.Fatalf("missing client certificate: message %q does not say so", e.Message)
			}
			s, err := cli.Stream(context.Background(), procBidiEcho, KindBidiStream)
			if err == nil {
				_ = s.Send([]byte("1"))
				_ = s.CloseSend()
				_, err = receiveAll(s)
				s.Close()
			}
			if e := wantCode(t, err, CodeUnavailable); !strings.Contains(e.Message, "client certificate") {
				t.Fatalf("stream without a client certificate: %q", e.Message)
			}

			// The server's certificate is not signed by the CA the client trusts.
			cli = c.client(t, url, WithTLS(&TLSConfig{CAFile: pki.OtherCAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}))
			_, err = cli.CallUnary(context.Background(), procSUnary, []byte("1"))
			if e := wantCode(t, err, CodeUnavailable); !strings.Contains(e.Message, "unknown CA") {
				t.Fatalf("unknown CA: message %q does not name it", e.Message)
			}
			// The system trust store does not know our CA either.
			cli = c.client(t, url)
			_, err = cli.CallUnary(context.Background(), procSUnary, []byte("1"))
			if e := wantCode(t, err, CodeUnavailable); !strings.Contains(e.Message, "unknown CA") {
				t.Fatalf("system store: message %q does not name the unknown CA", e.Message)
			}
			// Name mismatch.
			cli = c.client(t, url, WithTLS(&TLSConfig{CAFile: pki.CAFile, CertFile: pki.ClientCert,
				KeyFile: pki.ClientKey, ServerName: "example.com"}))
			_, err = cli.CallUnary(context.Background(), procSUnary, []byte("1"))
			if e := wantCode(t, err, CodeUnavailable); !strings.Contains(e.Message, "mismatch") {
				t.Fatalf("name mismatch: message %q", e.Message)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	pki := newTestPKI(t)
	srv, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	bad := []struct {
		name string
		cfg  *TLSConfig
		want string
	}{
		{"nil", nil, "nil"},
		{"no certificate", &TLSConfig{}, "certificate"},
		{"files and PEM", &TLSConfig{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CertPEM: pki.ServerCertPEM, KeyPEM: pki.ServerKeyPEM}, "not both"},
		{"cert without key", &TLSConfig{CertFile: pki.ServerCert}, "together"},
		{"PEM cert without key", &TLSConfig{CertPEM: pki.ServerCertPEM}, "together"},
		{"two CAs", &TLSConfig{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CAFile, CAPEM: pki.CAPEM}, "not both"},
		{"missing file", &TLSConfig{CertFile: "/nonexistent/cert.pem", KeyFile: pki.ServerKey}, "/nonexistent/cert.pem"},
		{"garbage PEM", &TLSConfig{CertPEM: []byte("garbage"), KeyPEM: pki.ServerKeyPEM}, "PEM"},
		{"NUL", &TLSConfig{CertFile: "a\x00b", KeyFile: "k"}, "NUL"},
	}
	for _, b := range bad {
		_, err := srv.ListenTLS("127.0.0.1:0", b.cfg)
		if err == nil {
			t.Fatalf("%s: ListenTLS accepted", b.name)
		}
		e := asError(t, err)
		if e.Status != StatusInvalidArgument || !strings.Contains(e.Message, b.want) {
			t.Fatalf("%s: %v (status %v), want invalid argument mentioning %q", b.name, err, e.Status, b.want)
		}
	}
	if _, err := NewClient("https://127.0.0.1:1", WithTLS(&TLSConfig{CAFile: pki.CAFile, CAPEM: pki.CAPEM})); err == nil {
		t.Fatal("client TLS config with two CAs accepted")
	}
	// A missing CA file is reported when the client is created or at the first call, naming the file.
	cli, err := NewClient("https://127.0.0.1:1", WithTLS(&TLSConfig{CAFile: "/nonexistent/ca.pem"}))
	if err == nil {
		defer cli.Close()
		_, err = cli.CallUnary(context.Background(), procSUnary, nil)
	}
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("missing CA file: %v", err)
	}
}
