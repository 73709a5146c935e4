"""Shared fixtures. The package is imported from ../src unless it is installed."""

import os
import sys
from pathlib import Path

# The Swift runtime's crash handler would otherwise take over SEGV & co. in the test process.
os.environ.setdefault("SWIFT_BACKTRACE", "enable=no")

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

REPO = Path(__file__).resolve().parents[3]
HEADER = REPO / "include" / "connectplugin.h"
