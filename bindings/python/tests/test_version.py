"""Versions, status strings and code names come from the library and agree with the header."""

import re

import pytest

import connectplugin
from connectplugin import Code, Status
from conftest import HEADER

HEADER_TEXT = HEADER.read_text()


def _define(name):
    return re.search(rf"#define {name} (\S+)", HEADER_TEXT).group(1)


def test_version_matches_header():
    assert connectplugin.version() == _define("CONNECTPLUGIN_VERSION").strip('"')
    assert connectplugin.version_num() == int(_define("CONNECTPLUGIN_VERSION_NUM"), 16)
    assert connectplugin.abi_version() == connectplugin.ABI_VERSION == 1


def test_package_version_is_the_header_version():
    # The version is written once, in the header; the package metadata (pyproject.toml, which
    # packaging tools read without importing anything) and __version__ must repeat it exactly.
    want = _define("CONNECTPLUGIN_VERSION").strip('"')
    assert connectplugin.__version__ == want
    pyproject = (HEADER.parent.parent / "bindings" / "python" / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == want


def test_library_path_is_reported():
    assert connectplugin.library_path.endswith("libconnectplugin.so")


def test_status_values_match_header():
    for st in Status:
        name = "CONNECTPLUGIN_OK" if st is Status.OK else f"CONNECTPLUGIN_ERR_{st.name}"
        assert int(_define(name).strip("()")) == st.value, name


def test_code_values_match_header():
    for code in Code:
        assert int(_define(f"CONNECTPLUGIN_CODE_{code.name}")) == code.value


@pytest.mark.parametrize(
    "status,text",
    [
        (Status.OK, "ok"),
        (Status.INVALID_ARGUMENT, "invalid argument"),
    ],
)
def test_status_string_known(status, text):
    assert connectplugin.status_string(status) == text


def test_status_string_every_status_nonempty_and_distinct():
    texts = [connectplugin.status_string(st) for st in Status]
    assert all(texts)
    assert len(set(texts)) == len(texts)
    # Unknown statuses still give a string (never NULL).
    assert isinstance(connectplugin.status_string(-1000), str)


def test_code_names_are_connect_wire_names():
    for code in Code:
        assert connectplugin.code_name(code) == code.wire_name == code.name.lower()
    assert connectplugin.code_name(Code.CANCELED) == "canceled"
    assert connectplugin.code_name(Code.DEADLINE_EXCEEDED) == "deadline_exceeded"


@pytest.mark.parametrize("value", [-1, 17, 1000, 2**31 - 1])
def test_code_name_out_of_range_is_unknown(value):
    assert connectplugin.code_name(value) == "unknown"
    assert Code.of(value) is Code.UNKNOWN
