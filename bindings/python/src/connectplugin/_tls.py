"""TLS settings shared by TLS listeners (``Server.listen_tls``) and https clients (``Client``).

:class:`TLSOptions` is a plain Python value: it holds file paths or PEM bytes and builds the library's
``connectplugin_tls_options`` object only for the duration of the call that uses it (the library
copies it). Files are read by the library when the options are used, so a missing or malformed file
is reported by ``listen_tls`` or the ``Client`` constructor, with the file name and the reason.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from ctypes import byref
from typing import Any, Iterator, Optional, Union

from . import _ffi
from ._error import check

PathLike = Union[str, "os.PathLike[str]"]
PEM = Union[bytes, bytearray, memoryview, str]


def _path(value: Optional[PathLike], what: str) -> Optional[bytes]:
    if value is None:
        return None
    b = _ffi.as_cstr(os.fspath(value), what)
    if not b:
        raise ValueError(f"{what} must not be empty")
    return b


def _pem(value: Optional[PEM], what: str) -> Optional[bytes]:
    if value is None:
        return None
    b = _ffi.as_bytes(value, what)
    if not b:
        raise ValueError(f"{what} must not be empty")
    return b


class TLSOptions:
    """TLS settings (OpenSSL 3), for a server listener or a client.

    Parameters (all optional, keyword-only):

    * ``cert_file``/``key_file`` or ``cert_pem``/``key_pem``: our certificate chain and private key
      (PEM). A server needs them; a client gives them for mutual TLS (mTLS).
    * ``ca_file`` or ``ca_pem``: the CA bundle to trust (PEM). Client: verifies the server with it
      instead of the system trust store. Server: verifies client certificates with it.
    * ``require_client_cert``: server only; reject clients without a certificate signed by the CA.
    * ``server_name``: client only; the name sent as SNI and verified (default: the URL's host).
    * ``insecure_skip_verify``: client only; do not verify the server at all. For tests only.

    >>> opts = TLSOptions(ca_file="ca.crt", cert_file="client.crt", key_file="client.key")
    >>> opts.ca_file
    'ca.crt'
    """

    __slots__ = (
        "cert_file",
        "key_file",
        "cert_pem",
        "key_pem",
        "ca_file",
        "ca_pem",
        "require_client_cert",
        "server_name",
        "insecure_skip_verify",
    )

    def __init__(
        self,
        *,
        cert_file: Optional[PathLike] = None,
        key_file: Optional[PathLike] = None,
        cert_pem: Optional[PEM] = None,
        key_pem: Optional[PEM] = None,
        ca_file: Optional[PathLike] = None,
        ca_pem: Optional[PEM] = None,
        require_client_cert: bool = False,
        server_name: Optional[str] = None,
        insecure_skip_verify: bool = False,
    ) -> None:
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (cert_pem is None) != (key_pem is None):
            raise ValueError("cert_pem and key_pem go together")
        if cert_file is not None and cert_pem is not None:
            raise ValueError("give the certificate either as files (cert_file/key_file) or as PEM (cert_pem/key_pem)")
        if ca_file is not None and ca_pem is not None:
            raise ValueError("give the CA either as ca_file or as ca_pem")
        if server_name is not None and not isinstance(server_name, str):
            raise TypeError("server_name must be a str")
        self.cert_file = None if cert_file is None else os.fspath(cert_file)
        self.key_file = None if key_file is None else os.fspath(key_file)
        self.cert_pem = _pem(cert_pem, "cert_pem")
        self.key_pem = _pem(key_pem, "key_pem")
        self.ca_file = None if ca_file is None else os.fspath(ca_file)
        self.ca_pem = _pem(ca_pem, "ca_pem")
        self.require_client_cert = bool(require_client_cert)
        self.server_name = server_name
        self.insecure_skip_verify = bool(insecure_skip_verify)
        # Validate paths/names early (NUL characters, empty strings).
        _path(self.cert_file, "cert_file")
        _path(self.key_file, "key_file")
        _path(self.ca_file, "ca_file")
        if server_name is not None:
            _path(server_name, "server_name")

    @property
    def has_certificate(self) -> bool:
        return self.cert_file is not None or self.cert_pem is not None

    @property
    def has_ca(self) -> bool:
        return self.ca_file is not None or self.ca_pem is not None

    @contextmanager
    def _native(self) -> Iterator[Any]:
        """A ``connectplugin_tls_options *`` built from these settings, freed on exit."""
        h = _ffi.connectplugin_tls_options_new()
        if not h:
            raise MemoryError("connectplugin_tls_options_new failed")
        try:
            if self.cert_file is not None:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_tls_options_set_cert_files(
                    h, _path(self.cert_file, "cert_file"), _path(self.key_file, "key_file"), byref(err)
                )
                check(st, err, "tls set_cert_files")
            if self.cert_pem is not None:
                assert self.key_pem is not None
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_tls_options_set_cert_pem(
                    h,
                    _ffi.u8_ptr(self.cert_pem),
                    len(self.cert_pem),
                    _ffi.u8_ptr(self.key_pem),
                    len(self.key_pem),
                    byref(err),
                )
                check(st, err, "tls set_cert_pem")
            if self.ca_file is not None:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_tls_options_set_ca_file(h, _path(self.ca_file, "ca_file"), byref(err))
                check(st, err, "tls set_ca_file")
            if self.ca_pem is not None:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_tls_options_set_ca_pem(h, _ffi.u8_ptr(self.ca_pem), len(self.ca_pem), byref(err))
                check(st, err, "tls set_ca_pem")
            if self.require_client_cert:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_tls_options_set_require_client_cert(h, 1, byref(err))
                check(st, err, "tls set_require_client_cert")
            if self.server_name is not None:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_tls_options_set_server_name(h, _path(self.server_name, "server_name"), byref(err))
                check(st, err, "tls set_server_name")
            if self.insecure_skip_verify:
                err = _ffi.new_error_out()
                st = _ffi.connectplugin_tls_options_set_insecure_skip_verify(h, 1, byref(err))
                check(st, err, "tls set_insecure_skip_verify")
            yield h
        finally:
            _ffi.connectplugin_tls_options_free(h)

    def __repr__(self) -> str:
        parts = []
        for name in self.__slots__:
            v = getattr(self, name)
            if v is None or v is False:
                continue
            if name in ("cert_pem", "key_pem", "ca_pem"):
                parts.append(f"{name}=<{len(v)} bytes>")
            else:
                parts.append(f"{name}={v!r}")
        return f"TLSOptions({', '.join(parts)})"
