"""What the operator sees of a run: step lines, diffs, echoed commands, and the recap.

Rule 1: lines look like Ansible's: `ok: [vps1] name`, `changed: [vps1] name: what`,
`skipping:`, `failed:`, `unreachable:`, then one recap line per host,
`vps1 : ok=12 changed=3 unreachable=0 failed=0 skipped=0`.  As in Ansible, `ok` counts
every step that succeeded, changed or not.
Rule 2: hosts run in parallel, so every line (and each diff, as one block) is written
under one lock; a host's lines stay in its order.
Rule 3: nothing secret reaches the console: commands are echoed without their stdin,
and secret files' diffs are hidden by the operation itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from provision.connection import Echo

COUNTERS = ("ok", "changed", "unreachable", "failed", "skipped")


@dataclass(frozen=True)
class HostStats:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0

    def bump(self, *counters: str) -> HostStats:
        return replace(self, **{c: getattr(self, c) + 1 for c in counters})

    @property
    def broken(self) -> bool:
        return bool(self.failed or self.unreachable)

    def line(self, name: str, width: int = 0) -> str:
        counts = " ".join(f"{c}={getattr(self, c)}" for c in COUNTERS)
        return f"{name.ljust(width)} : {counts}"


@dataclass(frozen=True)
class Recap:
    """Each host's counters, in inventory order."""

    hosts: tuple[tuple[str, HostStats], ...]

    def lines(self) -> list[str]:
        width = max((len(name) for name, _ in self.hosts), default=0)
        return [stats.line(name, width) for name, stats in self.hosts]

    def stats(self, name: str) -> HostStats:
        return dict(self.hosts)[name]


class Console:
    """Thread-safe output of a run; `write` takes one line (default: print)."""

    def __init__(self, write: Callable[[str], None] = print, verbose: bool = False, diff: bool = False) -> None:
        self._write, self.verbose, self.diff = write, verbose, diff
        self._lock = threading.Lock()

    def lines(self, lines: Iterable[str]) -> None:
        with self._lock:
            for line in lines:
                self._write(line)

    def status(self, status: str, host: str, name: str, detail: str = "") -> None:
        self.lines([f"{status}: [{host}] {name}" + (f": {detail}" if detail else "")])

    def show_diff(self, text: str) -> None:
        if self.diff and text:
            self.lines(text.rstrip("\n").split("\n"))

    def echo_for(self, host: str) -> Echo | None:
        """The -v echo for one host's commands (`[vps1] [#] cmd`), or None when quiet."""
        if not self.verbose:
            return None
        return lambda line: self.lines([f"[{host}] {line}"])

    def recap(self, recap: Recap) -> None:
        self.lines(["", "PLAY RECAP", *recap.lines()])
