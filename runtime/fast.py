"""The native data path, where it was built: `load(name)` gives the C module or None.

Rule 1: the native modules (runtime/native/*.c, built by setup.py) do exactly what the
        pure-Python code next to them does, byte for byte; the Python code stays the
        reference and the fallback, and tests compare the two.
Rule 2: VPN_RUNTIME_NATIVE=0 in the environment turns the native path off (the pure-Python
        one runs); VPN_RUNTIME_NATIVE=require makes a missing module an import error (CI).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

MODE = os.environ.get("VPN_RUNTIME_NATIVE", "1")


def load(name: str) -> ModuleType | None:
    """runtime.<name> (a C extension), or None when it is off or was not built (Rule 2)."""
    if MODE == "0":
        return None
    try:
        return importlib.import_module(f"runtime.{name}")
    except ImportError:
        if MODE == "require":
            raise
        return None
