"""Liveness timers of one session: keepalive when idle, dead peer when silent.

Rule 1: times are the caller's `now` (float seconds); nothing here reads a clock.
Rule 2: `sent`/`received` are plain attribute stores so the data path can update them
        per packet; deadlines are computed only when the loop asks.
"""

from __future__ import annotations


class Liveness:
    """Last send and last authenticated receive, with the keepalive and dead-peer spans."""

    __slots__ = ("keepalive", "dead_after", "last_sent", "last_received")

    def __init__(self, keepalive: float, dead_after: float, now: float) -> None:
        self.keepalive = keepalive
        self.dead_after = dead_after
        self.last_sent = now
        self.last_received = now

    def keepalive_at(self) -> float:
        return self.last_sent + self.keepalive

    def dead_at(self) -> float:
        return self.last_received + self.dead_after

    def keepalive_due(self, now: float) -> bool:
        return now >= self.keepalive_at()

    def dead(self, now: float) -> bool:
        return now >= self.dead_at()

    def silent_for(self, now: float) -> float:
        return now - self.last_received


def earliest(*deadlines: float | None) -> float | None:
    """The earliest of the given deadlines, ignoring None."""
    real = [d for d in deadlines if d is not None]
    return min(real) if real else None
