"""The event loop the daemons run on: uvloop where it is installed, asyncio's own otherwise.

Rule 1: the data path's cost per wakeup is mostly the loop's (select, dispatch) and the
        interpreter's; uvloop does both in C, which shortens the time a lone packet spends
        in the runtime (the RTT the tunnel adds).  Everything the runtime asks of the loop
        (add_reader, signal handlers, TCP and Unix servers, executors) is standard asyncio.
Rule 2: VPN_RUNTIME_LOOP=asyncio in the environment asks for asyncio's loop.
Rule 3: timers `sleep_until()` a deadline.  libuv counts timers in whole milliseconds, so a
        sleep of 0.4 ms returns at once, and a timer loop that sleeps exactly what is left
        spins until its deadline.  The sleep is computed from the loop's own clock, rounded
        up to a multiple of `grain` (1 ms unless the caller batches), plus 1 ms.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Coroutine
from typing import Any


GRAIN = 0.001  # libuv's timer resolution, in seconds


def until(deadline: float | None, now: float, cap: float = 1.0, grain: float = GRAIN) -> float:
    """Seconds to sleep for a timer due at `deadline` (None: no deadline), at most `cap`
    (Rule 3): 0 when it is due, else rounded up to a multiple of `grain`, plus one GRAIN."""
    if deadline is None:
        return cap
    left = deadline - now
    if left <= 0:
        return 0.0
    return min(cap, math.ceil(left / grain) * grain + GRAIN)


async def sleep_until(deadline: float | None, cap: float = 1.0, grain: float = GRAIN) -> None:
    """Sleep until `deadline` (time.monotonic() seconds; None: for `cap`), at most `cap`, in
    steps of `grain` (Rule 3)."""
    await asyncio.sleep(until(deadline, asyncio.get_running_loop().time(), cap, grain))


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
