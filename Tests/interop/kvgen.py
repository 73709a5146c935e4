"""Generates the Python code for examples/proto/kv/v1/kv.proto into Tests/interop/gen/.

protoc comes from grpcio-tools (`python3 -m grpc_tools.protoc`); the Connect stubs from
protoc-gen-connectrpc 0.13, which by default targets protobuf-py, so it gets `protobuf=google` to
match the google.protobuf messages that --python_out writes; the grpcio stubs from grpcio-tools'
own plugin (--grpc_python_out).  The output is the package `kv.v1` (kv_pb2.py, kv_connect.py,
kv_pb2_grpc.py) under gen/, which is gitignored and regenerated at the start of every session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROTO_ROOT = REPO / "examples" / "proto"
PROTO = PROTO_ROOT / "kv" / "v1" / "kv.proto"
GEN = HERE / "gen"
GENERATED = ("kv/v1/kv_pb2.py", "kv/v1/kv_connect.py", "kv/v1/kv_pb2_grpc.py")


def generate() -> Path:
    """(Re)generates gen/ atomically and returns its path."""
    tmp = HERE / f"gen.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={tmp}",
        f"--grpc_python_out={tmp}",
        f"--connectrpc_out={tmp}",
        "--connectrpc_opt=protobuf=google",
        str(PROTO),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"protoc failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    for f in GENERATED:
        if not (tmp / f).is_file():
            raise RuntimeError(f"protoc did not write {f} (command: {' '.join(cmd)})")
    old = HERE / f"gen.old.{os.getpid()}"
    if GEN.exists():
        GEN.rename(old)
    tmp.rename(GEN)
    shutil.rmtree(old, ignore_errors=True)
    return GEN


def ensure(force: bool = False) -> Path:
    """Makes `import kv.v1.kv_pb2` / `kv.v1.kv_connect` / `kv.v1.kv_pb2_grpc` work; generates if
    forced, missing, or older than kv.proto."""
    stale = any(not (GEN / f).is_file() or (GEN / f).stat().st_mtime < PROTO.stat().st_mtime for f in GENERATED)
    if force or stale:
        generate()
    if str(GEN) not in sys.path:
        sys.path.insert(0, str(GEN))
    return GEN
