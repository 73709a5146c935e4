#!/usr/bin/env python3
"""A Python host for test_plugin_faults.py, run as its own process (its RSS is measured, and it is
SIGKILLed):

  fault_host.py flood PLUGIN     launches PLUGIN (fault_plugin.py, FAULT_MODE=flood) and pings it for
                                 3 s while it floods; prints one JSON line: pings, failures, the slowest
                                 ping in ms, VmRSS at the start and the end in kB
  fault_host.py hold CMD...      launches each CMD (FAULT_MODE from "mode:" prefixes: stubborn:PATH,
                                 kv:PATH) and prints their pids as JSON, then sleeps until killed
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bindings" / "python" / "src"))
import connectplugin  # noqa: E402

FAULT = {"cookie": ("FAULT_PLUGIN", "faulty"), "plugins": {1: ["fault"]}}
KV = {"cookie": ("KV_PLUGIN", "connectplugin-kv"), "plugins": {1: ["kv"]}}


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def flood(plugin: str) -> int:
    # The plugin's lines go to `logging` (connectplugin.plugin.NAME): show them all on stderr, which
    # the test counts.
    logging.basicConfig(level=1, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    p = connectplugin.PluginClient([plugin], env={"FAULT_MODE": "flood"}, start_timeout_ms=30_000, **FAULT)
    time.sleep(1.0)  # the flood is on
    start_rss = rss_kb()
    pings = failures = 0
    slowest = 0.0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            p.ping(timeout_ms=5000)
            pings += 1
        except connectplugin.ConnectPluginError:
            failures += 1
        slowest = max(slowest, (time.monotonic() - t) * 1000)
        time.sleep(0.05)
    print(json.dumps({"pings": pings, "failures": failures, "slowest_ms": slowest, "rss_start_kb": start_rss,
                      "rss_end_kb": rss_kb(), "alive": p.exit_status is None}), flush=True)
    p.kill()
    return 0


def hold(specs: list[str]) -> int:
    held = []
    for spec in specs:
        mode, path = spec.split(":", 1)
        if mode == "kv":
            held.append(connectplugin.PluginClient([path], start_timeout_ms=30_000, **KV))
        else:
            held.append(connectplugin.PluginClient([path], env={"FAULT_MODE": mode}, start_timeout_ms=30_000, **FAULT))
    print(json.dumps([p.pid for p in held]), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "flood":
        sys.exit(flood(sys.argv[2]))
    sys.exit(hold(sys.argv[2:]))
