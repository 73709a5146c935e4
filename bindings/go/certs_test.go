package connectplugin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a throw-away CA with a server certificate (SAN IP:127.0.0.1, DNS:localhost) and a
// client certificate (clientAuth), all P-256 / X.509 v3, generated with the standard library.
// Files are written to a temporary directory; the PEM bytes are kept too.
type testPKI struct {
	Dir                                     string
	CAFile, ServerCert, ServerKey           string
	ClientCert, ClientKey                   string
	CAPEM, ServerCertPEM, ServerKeyPEM      []byte
	ClientCertPEM, ClientKeyPEM             []byte
	OtherCAFile                             string // an unrelated CA, for "unknown CA" failures
	OtherCAPEM                              []byte
	ClientSubjectCN, CASubjectCN, OtherCACN string
	serverSerial, clientSerial, otherSerial int64
	caKey                                   *ecdsa.PrivateKey
	caCert                                  *x509.Certificate
}

func genKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func newCA(t *testing.T, cn string, serial int64) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key := genKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pemCert(der)
}

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, cn string,
	usage x509.ExtKeyUsage, ips []net.IP, dns []string) ([]byte, []byte) {
	t.Helper()
	key := genKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		IPAddresses:           ips,
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pemCert(der), pemKey(t, key)
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{Dir: t.TempDir(), CASubjectCN: "connectplugin go test CA",
		ClientSubjectCN: "connectplugin go test client", OtherCACN: "connectplugin unrelated CA"}
	p.caCert, p.caKey, p.CAPEM = newCA(t, p.CASubjectCN, 1)
	p.ServerCertPEM, p.ServerKeyPEM = newLeaf(t, p.caCert, p.caKey, 2, "127.0.0.1", x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	p.ClientCertPEM, p.ClientKeyPEM = newLeaf(t, p.caCert, p.caKey, 3, p.ClientSubjectCN, x509.ExtKeyUsageClientAuth,
		nil, []string{"client.test"})
	_, _, p.OtherCAPEM = newCA(t, p.OtherCACN, 4)
	write := func(name string, data []byte) string {
		path := filepath.Join(p.Dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.CAFile = write("ca.crt", p.CAPEM)
	p.ServerCert = write("server.crt", p.ServerCertPEM)
	p.ServerKey = write("server.key", p.ServerKeyPEM)
	p.ClientCert = write("client.crt", p.ClientCertPEM)
	p.ClientKey = write("client.key", p.ClientKeyPEM)
	p.OtherCAFile = write("other-ca.crt", p.OtherCAPEM)
	return p
}
