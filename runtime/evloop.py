"""The event loop the daemons run on: uvloop where it is installed, asyncio's own otherwise.

Rule 1: the data path's cost per wakeup is mostly the loop's (select, dispatch) and the
        interpreter's; uvloop does both in C, which shortens the time a lone packet spends
        in the runtime (the RTT the tunnel adds).  Everything the runtime asks of the loop
        (add_reader, signal handlers, TCP and Unix servers, executors) is standard asyncio.
Rule 2: VPN_RUNTIME_LOOP=asyncio in the environment asks for asyncio's loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` to completion on the chosen loop (Rule 2) and return its result."""
    if os.environ.get("VPN_RUNTIME_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
