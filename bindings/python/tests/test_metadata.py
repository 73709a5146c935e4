"""Metadata lists owned by Python."""

import pytest

from connectplugin import Code, ConnectPluginError, Metadata, Status


def test_add_get_order_and_lowercasing():
    with Metadata() as md:
        md.add("X-Trace", b"abc")
        md.add("x-other", "text")
        md.add("X-TRACE", b"def")
        assert len(md) == 3
        assert list(md) == [("x-trace", b"abc"), ("x-other", b"text"), ("x-trace", b"def")]
        assert md[1] == ("x-other", b"text")
        assert md.get("x-TrAcE") == b"abc"
        assert md.get("absent") is None


def test_constructor_from_dict_and_pairs():
    with Metadata({"a": "1", "b": b"2"}) as md:
        assert md.to_list() == [("a", b"1"), ("b", b"2")]
    with Metadata([("a", "1"), ("a", "2")]) as md:
        assert md.to_list() == [("a", b"1"), ("a", b"2")]


def test_binary_values_need_bin_suffix():
    raw = bytes(range(256))
    with Metadata() as md:
        md.add("data-bin", raw)
        assert md.get("data-bin") == raw
        with pytest.raises(ConnectPluginError) as info:
            md.add("data", b"\x00\x01\xff")
        assert info.value.status is Status.INVALID_ARGUMENT
        assert info.value.code is Code.INVALID_ARGUMENT
        assert len(md) == 1


@pytest.mark.parametrize("key", ["", "bad key", "bad:key", "k\u00e9y"])
def test_invalid_keys(key):
    with Metadata() as md:
        with pytest.raises(ConnectPluginError) as info:
            md.add(key, b"v")
        assert info.value.status is Status.INVALID_ARGUMENT


def test_empty_value_allowed():
    with Metadata() as md:
        md.add("empty", b"")
        assert md.get("empty") == b""


def test_nul_in_key_rejected_before_the_library():
    with Metadata() as md:
        with pytest.raises(ValueError):
            md.add("a\0b", b"v")


def test_use_after_close():
    md = Metadata([("a", "1")])
    md.close()
    md.close()  # idempotent
    assert md.closed
    for op in (lambda: md.add("a", b"1"), lambda: len(md), lambda: md.get("a"), lambda: list(md)):
        with pytest.raises(ValueError, match="already closed"):
            op()
