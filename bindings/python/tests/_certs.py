"""Throw-away TLS material made with the `openssl` CLI: a CA, a server certificate for 127.0.0.1 and
localhost, a client certificate (clientAuth), and a second, unrelated CA with its own server
certificate (for "unknown CA" failures). All P-256, X.509 v3. A missing openssl fails loudly."""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CLIENT_CN = "connectplugin python test client"


@dataclass
class Certs:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_server_cert: Path
    other_server_key: Path


def _openssl(*args, cwd):
    if shutil.which("openssl") is None:
        pytest.fail("MISSING TOOL: the openssl CLI is needed to generate test certificates", pytrace=False)
    r = subprocess.run(["openssl", *args], cwd=str(cwd), capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}", pytrace=False)


def _ca(d, name, cn):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=d)
    _openssl("req", "-new", "-x509", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-days", "2", "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", f"{name}.crt", cwd=d)


def _leaf(d, name, cn, ca, ext):
    (d / f"{name}.ext").write_text(ext)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=d)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={cn}", "-out", f"{name}.csr", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)


SERVER_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "authorityKeyIdentifier=keyid\n")
CLIENT_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:client.test,URI:spiffe://test/client\n"
              "authorityKeyIdentifier=keyid\n")


def make_certs(d: Path) -> Certs:
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca", "connectplugin python test CA")
    _leaf(d, "server", "127.0.0.1", "ca", SERVER_EXT)
    _leaf(d, "client", CLIENT_CN, "ca", CLIENT_EXT)
    _ca(d, "other-ca", "some other CA")
    _leaf(d, "other-server", "127.0.0.1", "other-ca", SERVER_EXT)
    return Certs(d, d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
                 d / "other-ca.crt", d / "other-server.crt", d / "other-server.key")
