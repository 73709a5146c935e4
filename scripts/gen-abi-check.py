#!/usr/bin/env python3
"""Regenerates Sources/ConnectPluginCABI/SignatureCheck.swift from include/connectplugin.h: one
sameSignature line per function prototype, so the compiler checks every export against the header."""
import re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
header = (root / "include" / "connectplugin.h").read_text()
# Prototypes: CONNECTPLUGIN_API, a return type, then connectplugin_name( at the start of a declaration
# (not typedefs). A prototype without CONNECTPLUGIN_API is an error: every export carries the macro.
proto = r"[a-z_ ]*[a-z_0-9]+\s*\**\s*(connectplugin_[a-z0-9_]+)\("
names = sorted(set(re.findall(r"^CONNECTPLUGIN_API\s+" + proto, header, re.M)))
unmarked = sorted(set(re.findall(r"^" + proto, header, re.M)))
if unmarked:
    raise SystemExit("gen-abi-check.py: put CONNECTPLUGIN_API in front of these prototypes of include/connectplugin.h: "
                     + ", ".join(unmarked))
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
