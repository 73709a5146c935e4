#!/usr/bin/env python3
"""Regenerates Sources/ConnectPluginCABI/SignatureCheck.swift from include/connectplugin.h: one
sameSignature line per function prototype, so the compiler checks every export against the header."""
import re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
header = (root / "include" / "connectplugin.h").read_text()
# Prototypes: a return type, then connectplugin_name( at the start of a declaration (not typedefs).
names = sorted(set(re.findall(r"^[a-z_ ]*[a-z_0-9]+\s*\**\s*(connectplugin_[a-z0-9_]+)\(", header, re.M)))
lines = [
    "// Compile-time check that every export has exactly the type of its prototype in include/connectplugin.h.",
    "// One line per function; a mismatch fails to compile. Regenerate with scripts/gen-abi-check.py.",
    "import CConnectPluginABI",
    "",
    "@inline(never) func sameSignature<T>(_ a: T, _ b: T) {}",
    "",
    "func checkExportsMatchHeader() {",
]
lines += [f"    sameSignature(CConnectPluginABI.{n}, ConnectPluginCABI.{n})" for n in names]
lines += ["}", ""]
(root / "Sources" / "ConnectPluginCABI" / "SignatureCheck.swift").write_text("\n".join(lines))
print(f"{len(names)} functions")
