"""The daemons' event loop (runtime/evloop.py): uvloop when installed, and timers that do not
spin on its millisecond clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime import evloop


def test_until_sleeps_to_the_next_whole_millisecond_past_the_deadline():
    assert evloop.until(None, 5.0) == 1.0
    assert evloop.until(5.0, 5.0) == 0.0 and evloop.until(4.0, 5.0) == 0.0
    assert evloop.until(5.0004, 5.0) == pytest.approx(0.002)
    assert evloop.until(5.0016, 5.0) == pytest.approx(0.003)
    assert evloop.until(9.0, 5.0) == 1.0 and evloop.until(5.2, 5.0, cap=0.1) == 0.1
    assert evloop.until(5.003, 5.0, grain=0.1) == pytest.approx(0.101)
    assert evloop.until(5.13, 5.0, grain=0.1) == pytest.approx(0.201)


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def timer_loop(sleep, work: float = 0.0) -> int:
    """Wakeups of a timer loop that works `work` seconds per wakeup (a server walking its
    sessions) through three deadlines 10.4 ms apart."""
    wakeups, deadline = 0, time.monotonic() + 0.0104
    for _ in range(3):
        while time.monotonic() < deadline:
            busy(work)
            await sleep(deadline)
            wakeups += 1
        deadline += 0.0104
    return wakeups


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_timer_loop_wakes_a_few_times_per_deadline_not_hundreds(monkeypatch, loop):
    monkeypatch.setenv("VPN_RUNTIME_LOOP", loop)
    assert evloop.run(timer_loop(evloop.sleep_until)) <= 9
    assert evloop.run(timer_loop(evloop.sleep_until, work=0.003)) <= 9


def test_sleeping_exactly_what_is_left_spins_under_uvloop(monkeypatch):
    """What Rule 3 is about: libuv cuts a sleep to whole milliseconds."""
    pytest.importorskip("uvloop")
    monkeypatch.delenv("VPN_RUNTIME_LOOP", raising=False)

    async def exact(deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))

    # a busy machine may preempt the spin until past each deadline: the best of a few runs
    assert max(evloop.run(timer_loop(exact)) for _ in range(5)) > 9


def test_uvloop_is_the_default_where_installed(monkeypatch):
    pytest.importorskip("uvloop")
    monkeypatch.delenv("VPN_RUNTIME_LOOP", raising=False)

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert evloop.run(which()).startswith("uvloop")
