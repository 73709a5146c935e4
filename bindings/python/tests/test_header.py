"""The header is the contract: every prototype of include/connectplugin.h is declared in _ffi with
exactly the matching argtypes and restype, and _ffi declares nothing else."""

import ctypes
import re

import pytest

from conftest import HEADER
from connectplugin import _ffi


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def parse_prototypes():
    """name -> (return type, [parameter types]); types as (base, pointer depth)."""
    text = _strip_comments(HEADER.read_text())
    protos = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?)\b(connectplugin_\w+)\s*\(([^()]*)\)\s*;", text):
        ret, name, args = m.group(1), m.group(2), m.group(3)
        if ret.strip().startswith("typedef"):
            continue
        params = []
        args = " ".join(args.split())
        if args and args != "void":
            for a in args.split(","):
                a = a.strip()
                # Drop the parameter name (the last identifier).
                a = re.sub(r"\b\w+$", "", a).strip()
                params.append(_parse_type(a))
        protos[name] = (_parse_type(ret), params)
    return protos


def _parse_type(t):
    t = re.sub(r"\b(const|extern|CONNECTPLUGIN_API)\b", " ", t)
    depth = t.count("*")
    base = t.replace("*", " ").split()
    assert len(base) == 1, f"cannot parse C type {t!r}"
    return base[0], depth


_SCALARS = {
    "uint8_t": ctypes.c_uint8,
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
}


def parse_scalar_typedefs():
    """`typedef int32_t connectplugin_status;` & co.: name -> the ctypes type of the underlying scalar."""
    text = _strip_comments(HEADER.read_text())
    return {name: _SCALARS[base] for base, name in re.findall(r"typedef\s+(\w+)\s+(connectplugin_\w+)\s*;", text)
            if base in _SCALARS}


def parse_callback_typedefs():
    """`typedef void (*connectplugin_x)(args);`: name -> (return type, [parameter types])."""
    text = _strip_comments(HEADER.read_text())
    out = {}
    for m in re.finditer(r"typedef\s+([\w\s\*]+?)\s*\(\s*\*\s*(connectplugin_\w+)\s*\)\s*\(([^()]*)\)\s*;", text):
        ret, name, args = m.group(1), m.group(2), " ".join(m.group(3).split())
        params = []
        if args and args != "void":
            for a in args.split(","):
                params.append(_parse_type(re.sub(r"\b\w+$", "", a.strip()).strip()))
        out[name] = (_parse_type(ret), params)
    return out


SCALAR_TYPEDEFS = parse_scalar_typedefs()
CALLBACK_TYPEDEFS = parse_callback_typedefs()


def expected_ctype(base, depth):
    if base == "void":
        return None if depth == 0 else _wrap(ctypes.c_void_p, depth - 1)
    if base == "char":
        assert depth >= 1
        return _wrap(ctypes.c_char_p, depth - 1)
    if base in _SCALARS:
        return _wrap(_SCALARS[base], depth)
    if base in SCALAR_TYPEDEFS:
        return _wrap(SCALAR_TYPEDEFS[base], depth)
    if base in CALLBACK_TYPEDEFS:
        return _wrap(getattr(_ffi, base), depth)
    struct = getattr(_ffi, base, None)
    assert isinstance(struct, type) and issubclass(struct, ctypes.Structure), f"no opaque type {base} in _ffi"
    return _wrap(struct, depth)


def _wrap(t, depth):
    for _ in range(depth):
        t = ctypes.POINTER(t)
    return t


PROTOS = parse_prototypes()


def test_header_parsed():
    # Sanity: the regex saw the whole header (every section).
    assert len(PROTOS) >= 60
    for name in ("connectplugin_version", "connectplugin_client_call_unary", "connectplugin_response_free",
                 "connectplugin_server_register_unary", "connectplugin_call_fail"):
        assert name in PROTOS


def test_every_header_function_is_declared_and_nothing_else():
    declared = set(_ffi.FUNCTIONS)
    in_header = set(PROTOS)
    assert in_header - declared == set(), "declared in the header but not in _ffi"
    assert declared - in_header == set(), "declared in _ffi but not in the header"


@pytest.mark.parametrize("name", sorted(PROTOS))
def test_signature_matches_header(name):
    (ret, params) = PROTOS[name]
    fn = getattr(_ffi.lib, name)
    assert fn is _ffi.FUNCTIONS[name]
    assert getattr(_ffi, name) is fn
    assert fn.argtypes is not None, f"{name}: argtypes not set"
    assert fn.restype is expected_ctype(*ret), f"{name}: restype {fn.restype} != header {ret}"
    expected = [expected_ctype(*p) for p in params]
    assert list(fn.argtypes) == expected, f"{name}: argtypes {fn.argtypes} != header {params}"


def test_typedefs_parsed():
    for name in ("connectplugin_status", "connectplugin_code", "connectplugin_method_kind"):
        assert SCALAR_TYPEDEFS[name] is ctypes.c_int32
    assert set(CALLBACK_TYPEDEFS) >= {"connectplugin_unary_handler", "connectplugin_free_func",
                                      "connectplugin_stream_handler"}


@pytest.mark.parametrize("name", sorted(CALLBACK_TYPEDEFS))
def test_callback_type_matches_header(name):
    (ret, params) = CALLBACK_TYPEDEFS[name]
    cb = getattr(_ffi, name)
    assert issubclass(cb, ctypes._CFuncPtr), f"{name} is not a CFUNCTYPE"
    assert cb._restype_ is expected_ctype(*ret)
    assert list(cb._argtypes_) == [expected_ctype(*p) for p in params]


@pytest.mark.parametrize("name", sorted(SCALAR_TYPEDEFS))
def test_scalar_typedef_matches_header(name):
    assert getattr(_ffi, name) is SCALAR_TYPEDEFS[name]


def test_defines_match_header():
    """The numeric constants the binding mirrors (codes, statuses, kinds, EOF, HTTP versions)."""
    from connectplugin import Code, MethodKind, Status
    from connectplugin import _client

    defines = dict(re.findall(r"#define (CONNECTPLUGIN_\w+) \(?(-?\d+)\)?\s*$", HEADER.read_text(), flags=re.M))
    defines = {k: int(v) for k, v in defines.items()}
    for c in Code:
        assert defines[f"CONNECTPLUGIN_CODE_{c.name}"] == c.value
    for st in Status:
        key = "CONNECTPLUGIN_OK" if st is Status.OK else f"CONNECTPLUGIN_ERR_{st.name}"
        assert defines[key] == st.value
    for k in MethodKind:
        assert defines[f"CONNECTPLUGIN_{k.name}"] == k.value
    assert defines["CONNECTPLUGIN_EOF"] == _ffi.EOF
    assert defines["CONNECTPLUGIN_HTTP_1_1"] == _client.HTTP_1_1
    assert defines["CONNECTPLUGIN_HTTP_2"] == _client.HTTP_2


def test_opaque_handles_are_distinct_types():
    names = [n for n in dir(_ffi) if n.startswith("connectplugin_")
             and isinstance(getattr(_ffi, n), type) and issubclass(getattr(_ffi, n), ctypes.Structure)]
    structs = set(re.findall(r"typedef struct (connectplugin_\w+)", HEADER.read_text()))
    assert set(names) == structs
    assert len({id(getattr(_ffi, n)) for n in names}) == len(names)


def test_abi_version_matches_header_and_binding():
    m = re.search(r"#define CONNECTPLUGIN_ABI_VERSION (\d+)", HEADER.read_text())
    assert int(m.group(1)) == _ffi.ABI_VERSION == _ffi.lib.connectplugin_abi_version()


def test_every_prototype_carries_the_export_macro():
    text = _strip_comments(HEADER.read_text())
    unmarked = [m.group(1) for m in re.finditer(r"^(?!CONNECTPLUGIN_API\b)[a-z][\w\s\*]*?\b(connectplugin_\w+)\s*\(", text,
                                                flags=re.M)
                if not m.group(0).startswith("typedef")]
    assert unmarked == [], "prototypes without CONNECTPLUGIN_API"
    assert len(re.findall(r"^CONNECTPLUGIN_API\b", text, flags=re.M)) == len(PROTOS)


def _status_docs():
    """name -> doc comment, for every function returning connectplugin_status."""
    raw = HEADER.read_text()
    return {m.group(2): m.group(1) for m in re.finditer(
        r"/\*\*((?:(?!\*/).)*)\*/\s*CONNECTPLUGIN_API\s+connectplugin_status\s+(connectplugin_\w+)\s*\(", raw, flags=re.S)}


def test_every_status_function_documents_its_statuses():
    docs = _status_docs()
    status_fns = {n for n, (ret, _) in PROTOS.items() if ret == ("connectplugin_status", 0)}
    assert len(status_fns) >= 50
    assert set(docs) == status_fns, "a status-returning function without a doc comment right above it"
    statuses = set(re.findall(r"#define (CONNECTPLUGIN_(?:OK|EOF|ERR_\w+)) ", HEADER.read_text()))
    assert {"CONNECTPLUGIN_OK", "CONNECTPLUGIN_EOF", "CONNECTPLUGIN_ERR_RPC"} <= statuses
    for name, doc in sorted(docs.items()):
        retvals = re.findall(r"@retval\s+(\w+)", doc)
        assert retvals, f"{name}: no @retval lines"
        assert len(retvals) == len(set(retvals)), f"{name}: a status is listed twice"
        assert set(retvals) <= statuses, f"{name}: @retval of an unknown status"
        if name != "connectplugin_error_status":
            assert retvals[0] == "CONNECTPLUGIN_OK", f"{name}: the first @retval is not CONNECTPLUGIN_OK"
            assert "CONNECTPLUGIN_ERR_INVALID_ARGUMENT" in retvals, f"{name}: NULL handles are not documented"
        assert ("CONNECTPLUGIN_EOF" in retvals) == name.endswith("_receive"), f"{name}: EOF is for *_receive only"
        assert "@return " not in doc, f"{name}: use @retval lines, not @return"
