"""One piece of work on many hosts at once, each over its own connection.

Rule 1: hosts run in a thread pool (`FORKS` at a time, as the runner); results come back
in the order the hosts were given, one `Outcome` each, whatever happened.
Rule 2: a host we cannot reach is `unreachable`, a command or sudo that fails is
`failed` (with the error's one line); neither stops the other hosts. Anything else is a
bug and is raised.
Rule 3: every connection opened is closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from provision.connection import HostUnreachable, Remote
from provision.errors import ProvisionError
from provision.inventory import Host
from provision.runner import Connector

T = TypeVar("T")
State = Literal["ok", "unreachable", "failed"]
FORKS = 5


@dataclass(frozen=True)
class Outcome(Generic[T]):
    host: str
    state: State
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def on_each(
    hosts: Sequence[Host], connect: Connector, work: Callable[[Remote], T], forks: int = FORKS,
) -> list[Outcome[T]]:
    """Run `work` on a connection to every host in parallel."""
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts)))) as pool:
        return list(pool.map(lambda h: on_one(h, connect, work), hosts))


def on_one(host: Host, connect: Connector, work: Callable[[Remote], T]) -> Outcome[T]:
    def session() -> T:
        remote = connect(host, None)
        try:
            return work(remote)
        finally:
            remote.close()

    try:
        return Outcome(host.name, "ok", session())
    except HostUnreachable as exc:
        return Outcome(host.name, "unreachable", error=exc.shown())
    except ProvisionError as exc:
        return Outcome(host.name, "failed", error=exc.message)
