"""Error objects: Python-side construction and conversion of library errors."""

import pickle

import pytest

import connectplugin
from connectplugin import Code, ConnectPluginError, Metadata, RPCError, Status


def test_rpc_error_python_constructor():
    e = RPCError(Code.NOT_FOUND, "no such key", details=[("google.rpc.ErrorInfo", b"\x01\x02")])
    assert isinstance(e, ConnectPluginError)
    assert e.status is Status.RPC
    assert e.code is Code.NOT_FOUND
    assert e.message == "no such key"
    assert e.details == [("google.rpc.ErrorInfo", b"\x01\x02")]
    assert e.metadata == []
    assert str(e) == "NOT_FOUND: no such key"


def test_rpc_error_accepts_int_codes_and_protobuf_details():
    from google.protobuf import wrappers_pb2

    e = RPCError(5, "x", details=[wrappers_pb2.StringValue(value="hi")])
    assert e.code is Code.NOT_FOUND
    assert e.details == [("google.protobuf.StringValue", wrappers_pb2.StringValue(value="hi").SerializeToString())]
    assert RPCError(99, "y").code is Code.UNKNOWN


def test_bad_detail_is_type_error():
    with pytest.raises(TypeError):
        RPCError(Code.INTERNAL, "x", details=["not a pair"])


def test_error_pickles():
    e = RPCError(Code.ABORTED, "again", details=[("a.B", b"z")], metadata=[("k", b"v")])
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is RPCError
    assert (e2.code, e2.message, e2.details, e2.metadata) == (e.code, e.message, e.details, e.metadata)


def test_library_error_is_converted():
    # A real error object from the library: an invalid header name.
    with Metadata() as md:
        with pytest.raises(ConnectPluginError) as info:
            md.add("bad key", b"v")
    e = info.value
    assert not isinstance(e, RPCError)
    assert e.status is Status.INVALID_ARGUMENT
    assert e.code is Code.INVALID_ARGUMENT
    assert e.message
    assert str(e) == f"INVALID_ARGUMENT: {e.message}"
    assert e.details == []


def test_unsupported_codec_is_reported():
    with pytest.raises(ConnectPluginError) as info:
        connectplugin.Client("http://127.0.0.1:1", codec="xml")
    assert info.value.status is Status.UNSUPPORTED


def test_unsupported_compression_is_reported():
    with pytest.raises(ConnectPluginError) as info:
        connectplugin.Client("http://127.0.0.1:1", compression="brotli-9000")
    assert info.value.status is Status.UNSUPPORTED


def test_invalid_server_option_is_reported():
    with pytest.raises(ConnectPluginError) as info:
        connectplugin.Server(handler_threads=0)
    assert info.value.status is Status.INVALID_ARGUMENT


def test_malformed_listen_address_is_invalid_argument():
    with connectplugin.Server() as srv:
        with pytest.raises(ConnectPluginError) as info:
            srv.listen_tcp("not an address")
        assert info.value.status is Status.INVALID_ARGUMENT


def test_address_in_use_is_io():
    with connectplugin.Server() as a, connectplugin.Server() as b:
        addr = a.listen_tcp("127.0.0.1:0")
        with pytest.raises(ConnectPluginError) as info:
            b.listen_tcp(addr)
        assert info.value.status is Status.IO
        assert info.value.message
