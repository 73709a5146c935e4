package connectplugin

/*
#include <stdlib.h>
#include "connectplugin.h"
*/
import "C"

import (
	"runtime"
	"strings"
)

// TLSConfig configures TLS for a listener (Server.ListenTLS) or a client (WithTLS). It is a plain Go
// value, copied into the library when it is used; files are read at that moment (listen or client
// creation), and errors name the file and the reason.
//
// Server: a certificate and key (CertFile/KeyFile or CertPEM/KeyPEM) are required. With a CA
// (CAFile or CAPEM) and RequireClientCert the server demands a client certificate signed by that CA
// (mTLS); handlers see it with Request.Peer / ServerStream.Peer.
//
// Client: without a CA the system trust store verifies the server. A certificate and key make it a
// client certificate (mTLS). ServerName overrides the name sent as SNI and verified (default: the
// URL's host). ALPN offers "h2" and "http/1.1"; WithHTTPVersion picks which one is used.
type TLSConfig struct {
	// Our certificate chain and private key, as PEM files or as PEM bytes (not both).
	CertFile string
	KeyFile  string
	CertPEM  []byte
	KeyPEM   []byte

	// The CA bundle to trust, as a PEM file or PEM bytes (not both). Client: verifies the server
	// instead of the system store. Server: verifies client certificates.
	CAFile string
	CAPEM  []byte

	// Server: reject clients without a certificate signed by the CA (mTLS).
	RequireClientCert bool
	// Client: the name to send as SNI and to verify (default: the URL's host).
	ServerName string
	// Client: do not verify the server certificate at all. For tests only.
	InsecureSkipVerify bool
}

// PeerCertificate is the verified TLS client certificate of a call's peer (mTLS).
type PeerCertificate struct {
	Subject  string   // the distinguished name, e.g. "CN=client"
	DNSNames []string // subject alternative names
	URIs     []string
	IPs      []string
}

// peerFromMetadata converts the library's peer list ("subject", "dns", "uri", "ip"). NULL gives nil.
func peerFromMetadata(md *C.connectplugin_metadata) *PeerCertificate {
	if md == nil {
		return nil
	}
	p := &PeerCertificate{}
	for _, e := range copyMetadata(md) {
		switch e.Key {
		case "subject":
			p.Subject = string(e.Value)
		case "dns":
			p.DNSNames = append(p.DNSNames, string(e.Value))
		case "uri":
			p.URIs = append(p.URIs, string(e.Value))
		case "ip":
			p.IPs = append(p.IPs, string(e.Value))
		}
	}
	return p
}

func invalidTLS(msg string) *Error {
	return newLocalError(StatusInvalidArgument, CodeInvalidArgument, "tls: "+msg)
}

// newTLSOptions builds a library TLS options object from cfg; the caller frees it with
// C.connectplugin_tls_options_free.
func newTLSOptions(cfg *TLSConfig) (*C.connectplugin_tls_options, error) {
	if cfg == nil {
		return nil, invalidTLS("config is nil")
	}
	hasCertFiles := cfg.CertFile != "" || cfg.KeyFile != ""
	hasCertPEM := len(cfg.CertPEM) > 0 || len(cfg.KeyPEM) > 0
	if hasCertFiles && hasCertPEM {
		return nil, invalidTLS("set CertFile/KeyFile or CertPEM/KeyPEM, not both")
	}
	if hasCertFiles && (cfg.CertFile == "" || cfg.KeyFile == "") {
		return nil, invalidTLS("CertFile and KeyFile go together")
	}
	if hasCertPEM && (len(cfg.CertPEM) == 0 || len(cfg.KeyPEM) == 0) {
		return nil, invalidTLS("CertPEM and KeyPEM go together")
	}
	if cfg.CAFile != "" && len(cfg.CAPEM) > 0 {
		return nil, invalidTLS("set CAFile or CAPEM, not both")
	}
	for what, s := range map[string]string{"CertFile": cfg.CertFile, "KeyFile": cfg.KeyFile,
		"CAFile": cfg.CAFile, "ServerName": cfg.ServerName} {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, invalidTLS(what + " contains a NUL byte")
		}
	}

	opts := C.connectplugin_tls_options_new()
	if opts == nil {
		return nil, newLocalError(StatusResource, CodeResourceExhausted, "connectplugin_tls_options_new: out of memory")
	}
	ok := false
	defer func() {
		if !ok {
			C.connectplugin_tls_options_free(opts)
		}
	}()
	var cerr *C.connectplugin_error
	if hasCertFiles {
		cert, key := C.CString(cfg.CertFile), C.CString(cfg.KeyFile)
		status := C.connectplugin_tls_options_set_cert_files(opts, cert, key, &cerr)
		freeCString(cert)
		freeCString(key)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if hasCertPEM {
		c, cn := cBytes(cfg.CertPEM)
		k, kn := cBytes(cfg.KeyPEM)
		status := C.connectplugin_tls_options_set_cert_pem(opts, c, cn, k, kn, &cerr)
		runtime.KeepAlive(cfg.CertPEM)
		runtime.KeepAlive(cfg.KeyPEM)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.CAFile != "" {
		p := C.CString(cfg.CAFile)
		status := C.connectplugin_tls_options_set_ca_file(opts, p, &cerr)
		freeCString(p)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if len(cfg.CAPEM) > 0 {
		p, n := cBytes(cfg.CAPEM)
		status := C.connectplugin_tls_options_set_ca_pem(opts, p, n, &cerr)
		runtime.KeepAlive(cfg.CAPEM)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.RequireClientCert {
		if err := check(C.connectplugin_tls_options_set_require_client_cert(opts, 1, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.ServerName != "" {
		n := C.CString(cfg.ServerName)
		status := C.connectplugin_tls_options_set_server_name(opts, n, &cerr)
		freeCString(n)
		if err := check(status, &cerr); err != nil {
			return nil, err
		}
	}
	if cfg.InsecureSkipVerify {
		if err := check(C.connectplugin_tls_options_set_insecure_skip_verify(opts, 1, &cerr), &cerr); err != nil {
			return nil, err
		}
	}
	ok = true
	return opts, nil
}
