"""Shared test setup. Integration tests take the daemon command from PYD_CMD
(default: this checkout's pyd.py under the running Python)."""

import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TOP not in sys.path:
    sys.path.insert(0, TOP)
