"""pyroute2, loaded late and lean: the one place the runtime imports it.

Rule 1: nothing is imported until a name is first used (`rtnl.IPRoute()`, `except
        rtnl.NetlinkError`), so commands and code paths that never touch netlink never pay.
Rule 2: pyroute2's package `__init__` imports every family it knows (NDB, IPDB, conntrack,
        ipset, nl80211, ...: about half its import time).  We register the package without
        running that `__init__` and import only `iproute.linux` and the netlink exceptions.
        The first access to any other top-level name (not a submodule) (`from pyroute2 import NDB`, by anyone
        in the process) runs the real `__init__` then, so nothing else sees a difference.
Rule 3: `prewarm()` runs that import in a daemon thread, for a caller with other work to do
        meanwhile (the client while it restores, resolves and opens its TUN); a use meanwhile
        waits for it, and `load()` waits for it explicitly.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any

_NAMES = {"IPRoute": "pyroute2.iproute.linux", "NetlinkError": "pyroute2.netlink.exceptions"}
_LOCK = threading.Lock()
_prewarmed: list[threading.Thread] = []


def _lean_package() -> None:
    """Put a pyroute2 package whose `__init__` runs only on first use of another name."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError("No module named 'pyroute2'", name="pyroute2")
    pkg = importlib.util.module_from_spec(spec)
    ran = []

    def full_init(name: str) -> Any:
        if name.startswith("__") or importlib.util.find_spec(f"pyroute2.{name}") is not None:
            raise AttributeError(name)  # a submodule: the import system loads it itself
        if not ran:
            ran.append(True)
            spec.loader.exec_module(pkg)  # type: ignore[union-attr]
            if name in pkg.__dict__:
                return pkg.__dict__[name]
        raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")

    pkg.__getattr__ = full_init  # type: ignore[attr-defined]
    sys.modules["pyroute2"] = pkg


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime.rtnl' has no attribute {name!r}")
    with _LOCK:
        _lean_package()
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def prewarm() -> None:
    """Start importing IPRoute and NetlinkError in a daemon thread (once; Rule 3)."""
    if not _prewarmed:
        thread = threading.Thread(target=lambda: [__getattr__(n) for n in _NAMES], name="rtnl-import",
                                  daemon=True)
        _prewarmed.append(thread)
        thread.start()


def load() -> None:
    """Have the import done now: the client calls this before its first packet to a server,
    so that the netlink setup after the welcome does not pay for it (Rule 3)."""
    prewarm()
    _prewarmed[0].join()
